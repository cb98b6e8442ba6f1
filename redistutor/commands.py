"""What a Redis command does, read from the running server, and which notebooks use it.

``explain("ZADD")`` (or ``%redis_help ZADD`` after ``%load_ext redistutor``) shows the command's
summary, syntax, complexity, first version, group and arguments from the server's own
``COMMAND DOCS``. Module commands have an empty entry there; for the vector-set commands the
metadata comes from ``modules/vector-sets/commands.json`` in the Redis source tarball the runtime
downloaded to build the server, and for the others (JSON, Bloom, Search) one sentence says no help
is available and links the command's page. Nothing here is copied documentation: every word
comes from the server, its source, or the notebooks.

``usage_index()`` maps each command to the notebooks whose code uses it (the notebook's code cells
and its ``patterns``/``scenarios``/``exercises`` modules); ``commands_markdown()`` renders the
commands index by group (``docs/commands.md``, kept in step by a test).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import _html as H
from .exceptions import ConfigError

__all__ = ["CommandHelp", "explain", "usage_index", "commands_markdown", "command_docs"]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def redis_io_url(name: str) -> str:
    return f"https://redis.io/docs/latest/commands/{name.lower().replace(' ', '-').replace('|', '-')}/"


# -- reading the metadata ----------------------------------------------------------------------

def command_docs(client: Any, *names: str) -> dict[str, dict]:
    """``COMMAND DOCS`` as a dict, names upper case ("CLIENT TRACKING" for subcommands).

    Sent on a raw connection: redis-py parses COMMAND replies with the COMMAND INFO callback.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("COMMAND", "DOCS", *names)
        reply = conn.read_response()
    finally:
        pool.release(conn)
    if isinstance(reply, list):  # RESP2: a flat name, doc, name, doc list
        reply = dict(zip(reply[::2], reply[1::2]))
    out: dict[str, dict] = {}
    for name, doc in reply.items():
        name = name.decode() if isinstance(name, bytes) else name
        doc = _decoded(doc)
        if isinstance(doc, list):
            doc = dict(zip(doc[::2], doc[1::2]))
        out[name.upper().replace("|", " ")] = doc
        for sub, sub_doc in (doc.get("subcommands") or {}).items():
            out[sub.upper().replace("|", " ")] = sub_doc
    return out


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if isinstance(value, dict):
        return {_decoded(k): _decoded(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=1)
def source_module_docs() -> dict[str, dict]:
    """Vector-set command metadata from the Redis source tarball the runtime built from ({} if none)."""
    from .provision import cache_dir

    for tarball in sorted((cache_dir() / "downloads").glob("redis*.tar.gz"), reverse=True):
        try:
            with tarfile.open(tarball) as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith("modules/vector-sets/commands.json")),
                               None)
                if member is None:
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    return {k.upper(): v for k, v in json.load(f).items()}
        except (OSError, tarfile.TarError, ValueError):
            continue
    return {}


# -- syntax -----------------------------------------------------------------------------------

def syntax(name: str, arguments: Sequence[Mapping[str, Any]]) -> str:
    """The usage line, built from the argument tree as redis.io builds it."""
    return " ".join([name] + [_arg(a) for a in arguments])


def _arg(a: Mapping[str, Any]) -> str:
    flags = set(a.get("flags") or [])
    if a.get("optional"):
        flags.add("optional")
    if a.get("multiple"):
        flags.add("multiple")
    kind, token = a.get("type"), a.get("token")
    name = a.get("display_text") or a.get("name", "")
    if kind == "pure-token":
        body = token or name.upper()
    elif kind == "oneof":
        body = " | ".join(_arg({**sub, "flags": [f for f in sub.get("flags", []) if f != "optional"]})
                          for sub in a.get("arguments", []))
        if "optional" not in flags:
            body = f"<{body}>"
    elif kind == "block":
        body = " ".join(_arg(sub) for sub in a.get("arguments", []))
        if token:
            body = f"{token} {body}"
    else:
        body = f"{token} {name}" if token else name
    if "multiple" in flags:
        body = f"{body} [{body} ...]" if "multiple_token" in flags or not token else f"{body} [{name} ...]"
    return f"[{body}]" if "optional" in flags else body


def _argument_rows(arguments: Sequence[Mapping[str, Any]], depth: int = 0) -> list[list[str]]:
    rows = []
    for a in arguments:
        flags = list(a.get("flags") or []) + (["optional"] if a.get("optional") else [])
        rows.append(["  " * depth + (a.get("display_text") or a.get("name", "")), a.get("type", ""),
                     a.get("token", "") or "", ", ".join(flags), a.get("since", "") or ""])
        rows += _argument_rows(a.get("arguments") or [], depth + 1)
    return rows


# -- the view ---------------------------------------------------------------------------------

class CommandHelp(H.Renderable):
    """One command's help: text and HTML from the same fields."""

    def __init__(self, name: str, doc: Mapping[str, Any] | None, *, source: str,
                 notebooks: Sequence[str] = ()) -> None:
        self.name, self.doc, self.source, self.notebooks = name, dict(doc or {}), source, list(notebooks)

    @property
    def available(self) -> bool:
        return bool(self.doc.get("summary"))

    def fields(self) -> list[tuple[str, str]]:
        d = self.doc
        if not self.available:
            module = f" (module {d['module']})" if d.get("module") else ""
            return [("help", f"No help is available for {self.name}{module} from this server: "
                             f"see {redis_io_url(self.name)}")]
        out = [("summary", d["summary"]), ("syntax", syntax(self.name, d.get("arguments") or [])),
               ("complexity", d.get("complexity", "") or "not stated"), ("since", d.get("since", "")),
               ("group", d.get("group", ""))]
        for version, change in d.get("history") or []:
            out.append((f"changed in {version}", change))
        return out + [("from", self.source), ("page", redis_io_url(self.name))]

    def _uses(self) -> str:
        return ", ".join(self.notebooks) if self.notebooks else "no notebook uses it yet"

    def _text(self) -> str:
        lines = [self.name] + [f"  {k}: {v}" for k, v in self.fields()]
        rows = _argument_rows(self.doc.get("arguments") or [])
        if rows:
            lines.append("  arguments:")
            lines += [f"    {r[0]} ({r[1]}{', ' + r[2] if r[2] else ''}{'; ' + r[3] if r[3] else ''})" for r in rows]
        return "\n".join(lines + [f"  used in: {self._uses()}"])

    def _html(self) -> str:
        facts = H.html_table(["", ""], [[k, v] for k, v in self.fields()])
        rows = _argument_rows(self.doc.get("arguments") or [])
        args = H.html_table(["argument", "type", "token", "flags", "since"], rows) if rows else ""
        return H.title(self.name) + facts + args + H.note(f"used in: {self._uses()}")


def _current_client() -> Any:
    from . import server as S

    live = [s for s in S._by_name.values() if getattr(s, "running", True)]
    if not live:
        raise ConfigError("explain() reads the running server's COMMAND DOCS: start one first "
                          "(server = start_server(...)) or pass it: explain('ZADD', server).")
    return live[-1].client()


def explain(command: str, server: Any = None) -> CommandHelp:
    """Help for ``command`` ("ZADD", "client tracking", "VSIM") from the running server.

    ``server`` is a server object or a ``redis.Redis``; by default the server this kernel started
    last.
    """
    name = " ".join(command.upper().split())
    if not name:
        raise ConfigError("explain() needs a command name, e.g. explain('ZADD').")
    client = server.client() if hasattr(server, "client") and callable(server.client) else server
    client = client if client is not None else _current_client()
    docs = command_docs(client, name.replace(" ", "|"))
    doc = docs.get(name)
    if doc is None:
        raise ConfigError(f"{name} is not a command this server knows: check the spelling "
                          "(COMMAND LIST names them all), or load the module that provides it.")
    source = "the server's COMMAND DOCS"
    if not doc.get("summary") and name in source_module_docs():
        doc, source = source_module_docs()[name], "modules/vector-sets/commands.json in the Redis source"
    return CommandHelp(name, doc, source=source, notebooks=usage_index().get(name, []))


# -- which notebooks use which commands ---------------------------------------------------------

# Client-like receivers in the notebooks and their modules (not dicts: `d.get(` is no GET).
_RECEIVER = r"(?:\br|\brc|\bc|\bclient|\bpipe|\bp|\btx|\badmin|\bother|\bwriter|\breader|\bprobe|\bredis_client|" \
            r"self\.r|self\._r|self\.redis|self\.client|\w+\.r|\w+\.client\(\))"
_METHOD = re.compile(_RECEIVER + r"\.([a-z][a-z_]*)\(")
_MODULE = re.compile(r"\.(json|bf|cf|cms|topk|tdigest|ft|vset)\(\)\.([a-z_]+)\(")
_QUOTED = re.compile(r"""(?:execute_command|redis\.call|redis\.pcall|send_command)\(\s*['"]([A-Za-z.|]+)['"]"""
                     r"""(?:\s*,\s*['"]([A-Za-z-]+)['"])?""")
_MODULE_PREFIX = {"json": "JSON.", "bf": "BF.", "cf": "CF.", "cms": "CMS.", "topk": "TOPK.", "tdigest": "TDIGEST.",
                  "ft": "FT.", "vset": ""}


def commands_in(text: str, known: Iterable[str]) -> set[str]:
    """Command names used by Python or Lua source ``text`` (only names in ``known``)."""
    known = set(known)
    found = set()
    for m in _METHOD.finditer(text):
        words = m.group(1).upper().split("_")
        # client_tracking_on -> CLIENT TRACKING; zrevrank -> ZREVRANK: the longest known prefix
        for candidate in [" ".join(words[:n]) for n in range(len(words), 0, -1)] + ["".join(words)]:
            if candidate in known:
                found.add(candidate)
                break
    for prefix, method in _MODULE.findall(text):
        name = _MODULE_PREFIX[prefix] + method.upper().replace("_", ".")
        if name in known:
            found.add(name)
    for raw, sub in _QUOTED.findall(text):
        name = raw.upper().replace("|", " ")
        if f"{name} {sub.upper()}" in known:  # "CLIENT", "TRACKING" -> CLIENT TRACKING
            found.add(f"{name} {sub.upper()}")
        elif name in known:
            found.add(name)
    return found


def _notebook_sources(nb: Path) -> str:
    cells = json.loads(nb.read_text()).get("cells", [])
    code = "\n".join("".join(c.get("source", [])) for c in cells if c.get("cell_type") == "code")
    slug = re.sub(r"^\d+-", "", nb.stem).replace("-", "_")
    for kind in ("patterns", "scenarios", "exercises"):
        module = ROOT / "redistutor" / kind / f"{slug}.py"
        if module.exists():
            code += "\n" + module.read_text()
    return code


@lru_cache(maxsize=4)
def _usage(known: frozenset[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        for name in commands_in(_notebook_sources(nb), known):
            index.setdefault(name, []).append(nb.stem)
    return index


def known_commands() -> frozenset[str]:
    """Every command name the index knows: the server's list (from the last explain) plus the
    vector-set commands, upper case."""
    return frozenset(_KNOWN) | frozenset(source_module_docs())


_KNOWN: set[str] = set()


def usage_index(client: Any = None) -> dict[str, list[str]]:
    """{command: [notebook stems that use it]}; reads COMMAND DOCS once per process for the names."""
    if not _KNOWN:
        client = client if client is not None else _current_client()
        _KNOWN.update(command_docs(client))
    return _usage(known_commands())


def commands_markdown(client: Any) -> str:
    """The commands index by group: the commands the notebooks use (with the notebooks), then
    each group's commands that no notebook uses yet. Generated from the server and the notebooks."""
    docs = command_docs(client)
    _KNOWN.update(docs)
    for name, doc in source_module_docs().items():
        docs.setdefault(name, {})
        if not docs[name].get("summary"):
            docs[name] = {**doc, "group": "vector set"}
    used = _usage(known_commands())
    groups: dict[str, list[str]] = {}
    for name, doc in docs.items():
        group = (doc.get("group") or "other").replace("_", " ").replace("-", " ")
        if group == "module":
            group = f"module: {doc.get('module', 'unknown')}"
        groups.setdefault(group, []).append(name)
    version = client.info("server")["redis_version"]
    lines = ["# Commands index", "",
             f"Generated by `python -m redistutor commands` from Redis {version}'s `COMMAND DOCS` and the",
             "notebooks' code (tests/test_commands.py checks it is current). Summaries are the server's own;",
             "module commands without them say so. A notebook counts as using a command when its code or its",
             "pattern, scenario or exercise module calls it through a client, a script or `execute_command`.",
             "`redistutor.explain(\"NAME\")` (or `%redis_help NAME`) gives the full help in a notebook.", ""]
    for group in sorted(groups):
        names = sorted(groups[group])
        taught = [n for n in names if n in used]
        lines += [f"## {group}", ""]
        if taught:
            lines += ["| command | summary | notebooks |", "|---|---|---|"]
            for n in taught:
                nbs = ", ".join(f"[{s}](../notebooks/{s}.ipynb)" for s in used[n])
                summary = (docs[n].get("summary") or "(no help from the server)").replace("|", "\\|")
                lines.append(f"| [`{n}`]({redis_io_url(n)}) | {summary} | {nbs} |")
            lines.append("")
        rest = [n for n in names if n not in used]
        if rest:
            lines += ["Not used by any notebook yet: " + ", ".join(f"`{n}`" for n in rest) + ".", ""]
    return "\n".join(lines)
