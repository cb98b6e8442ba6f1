"""Cross-shard consistency: one logical write split over Redis instances that never coordinate.

An account's ``profile`` lives on shard A and its ``settings`` on shard B (client-side sharding,
two deployments, or two cluster slots). No command spans both, so a write is two SETs and can be
torn: A gets the new value, B never does (the writer crashed, B was killed, the network dropped).
Nothing in Redis notices; every reader afterwards sees a pair that was never written together::

    time 0  writer: UPDATE the database (source of truth)  -> plan "pro", version 2
    time 1  writer: SET A acct:1:profile  {"plan": "pro"}
    time 2  writer: crashes (or shard B is killed)           <- the write is torn
    time 3  reader: GET A -> "pro",  GET B -> {"plan": "free", "max_projects": 3}
                    a pro account with free limits, and no way to tell

Three ways to make the tear visible or harmless, all implemented here:

* **Transaction stamp** (:class:`StampedSplit`, ``versions=None``): every part of one logical
  write carries the same random token, ``"<token>|<json>"``. A reader compares tokens; a mismatch
  is a tear (or a write still in flight: retry with backoff before repairing).
* **Version tokens** (``versions="counter"`` or ``"timestamp"``): ``"v<version>|<token>|<json>"``.
  Each shard refuses a part older than the one it holds (a Lua compare-and-set), and a reader can
  tell which side is newer. With ``"timestamp"`` the version is the writer's clock, and a writer
  whose clock is 5 s slow loses its writes silently; ``"counter"`` takes the version from the
  source of truth's row counter and does not care about clocks.
* **Commit marker** (:class:`MarkedSplit`): the parts are written under keys tagged with a txid,
  then a marker pointing at that txid is written *last*. Readers follow the marker, so a write
  that crashed before its marker is invisible: readers keep seeing the previous complete pair.

Repair is roll-forward from the source of truth (:class:`SourceOfTruth`, a SQLite table written
before the shards): rewrite every part from the database row, with a fresh stamp
(:class:`RollForward`). Each part is rewritten only if it still holds the value the reader saw (a
Lua compare-and-set), so a writer whose SET lands after that read is never overwritten. Backing
off before a repair (:meth:`StampedSplit.read_consistent`) only makes false repairs rarer; the
compare-and-set is what makes a repair safe.

Experiment drivers (tear trials, the blind repair, tables) live in
:mod:`redistutor.scenarios.cross_shard_consistency`.

Notebook: notebooks/10-cross-shard-consistency.ipynb
Redis: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/ (why multi-key
commands stop at a slot) · SET: https://redis.io/commands/set · EVAL: https://redis.io/commands/eval
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ..db import Database
from ..events import EventLog
from ..race import call_hook
from ..stats import Stats

SEP = "|"
VERSIONS = (None, "counter", "timestamp")


# -- stamps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """What identifies one logical write inside every part it wrote."""

    token: str
    version: int | None = None

    def __str__(self) -> str:
        return self.token if self.version is None else f"v{self.version}/{self.token}"


def _json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def encode(stamp: Stamp, payload: Mapping[str, Any]) -> str:
    """``"<token>|<json>"``, or ``"v<version>|<token>|<json>"`` when the stamp has a version.

    The ``v`` keeps the two forms apart: a hex token can be all digits (about 1 in 2000 are).
    """
    body = _json(payload)
    if stamp.version is None:
        return f"{stamp.token}{SEP}{body}"
    return f"v{stamp.version}{SEP}{stamp.token}{SEP}{body}"


def decode(raw: str | None) -> tuple[Stamp | None, dict | None]:
    """Inverse of :func:`encode`; ``(None, None)`` for a missing key."""
    if raw is None:
        return None, None
    head, _, rest = raw.partition(SEP)
    if head.startswith("v") and head[1:].isdigit():  # versioned: "v<version>|<token>|<json>"
        token, _, body = rest.partition(SEP)
        return Stamp(token, int(head[1:])), json.loads(body)
    return Stamp(head), json.loads(rest)


# -- reads ----------------------------------------------------------------------------------------

OK, TORN, MISSING = "ok", "torn", "missing"


@dataclass(frozen=True)
class Read:
    """One entity as a reader saw it: every part, its stamp, and the verdict."""

    entity: Any
    status: str  # "ok", "torn" (stamps differ or a part is missing), "missing" (no part at all)
    parts: dict[str, dict | None]
    stamps: dict[str, Stamp | None]
    raw: dict[str, str | None] = field(default_factory=dict)  # the values as read (for a safe repair)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def newest(self) -> str | None:
        """The part holding the highest version (the newer side of a tear), or None if unversioned."""
        versioned = {p: s.version for p, s in self.stamps.items() if s is not None and s.version is not None}
        return max(versioned, key=lambda p: versioned[p]) if versioned else None


def verdict(stamps: Mapping[str, Stamp | None]) -> str:
    """"ok" if every part carries the same stamp, "missing" if none exists, else "torn"."""
    present = [s for s in stamps.values() if s is not None]
    if not present:
        return MISSING
    if len(present) < len(stamps):
        return TORN
    return OK if len(set(present)) == 1 else TORN


@dataclass
class SplitStats(Stats):
    writes: int = 0
    torn_reads: int = 0  # reads that saw differing stamps (a tear, or a write in flight)
    retries: int = 0  # re-reads after backing off
    repairs: int = 0  # roll-forwards from the source of truth
    repair_skips: int = 0  # parts a repair left alone: a writer changed them after the read
    rejected: int = 0  # versioned parts refused by a shard holding a newer version


# -- the source of truth ----------------------------------------------------------------------------


class SourceOfTruth:
    """The entity's full document in SQLite, with a version counter bumped on every save.

    The writer saves here *first*; the shards are projections of this row, so a torn projection
    can always be rolled forward. Table ``<table>(id, doc, version)``, created through
    ``db.execute`` (no schema of its own in :mod:`redistutor.db`).
    """

    def __init__(self, db: Database, table: str = "accounts", *, synchronous: str | None = "NORMAL") -> None:
        if not table.isidentifier():
            raise ValueError(f"table must be an identifier, got {table!r}")
        self.db = db
        self.table = table
        if synchronous:
            # WAL + NORMAL: a commit survives an application crash (what these labs inject) but
            # skips the fsync per commit that makes 1000 writes take seconds on a busy disk.
            db.execute(f"PRAGMA synchronous={synchronous}", kind="schema")
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, doc TEXT NOT NULL,"
                   " version INTEGER NOT NULL)", kind="schema")

    def save(self, entity: int, parts: Mapping[str, Any]) -> int:
        """Upsert the document; returns its new version (1 for a new entity)."""
        rows = self.db.execute(
            f"INSERT INTO {self.table} (id, doc, version) VALUES (?, ?, 1) "
            "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, version = version + 1 RETURNING version",
            (entity, json.dumps(dict(parts), sort_keys=True)),
        )
        return int(rows[0][0])

    def load(self, entity: int) -> tuple[dict[str, Any], int] | None:
        rows = self.db.execute(f"SELECT doc, version FROM {self.table} WHERE id = ?", (entity,))
        if not rows:
            return None
        return json.loads(rows[0][0]), int(rows[0][1])

    def clear(self) -> None:
        self.db.execute(f"DELETE FROM {self.table}", kind="schema")


# -- the pattern: a stamp in every part, and a repair that never overwrites a later write -----------


class Stamped:
    """One logical write over several instances: every part carries the same stamp."""

    def __init__(self, shards, prefix="acct"):
        self.shards, self.prefix = dict(shards), prefix  # part name -> client of its instance

    def key(self, entity, part):
        return f"{self.prefix}:{entity}:{part}"

    def new_stamp(self, version=None):
        return Stamp(secrets.token_hex(8), version)  # one random token per logical write

    def repair_stamp(self, seen, version):
        return self.new_stamp(version)  # the truth's version, never the repairer's own clock

    def write(self, entity, parts, stamp):
        for part, r in self.shards.items():  # one SET per instance: the write can tear between them
            r.set(self.key(entity, part), encode(stamp, parts[part]))

    def read(self, entity):
        """GET every part; the pair is "ok" only if all parts carry the same stamp."""
        raw = {part: r.get(self.key(entity, part)) for part, r in self.shards.items()}
        decoded = {part: decode(value) for part, value in raw.items()}
        stamps = {part: stamp for part, (stamp, _) in decoded.items()}
        payloads = {part: payload for part, (_, payload) in decoded.items()}
        return Read(entity, verdict(stamps), payloads, stamps, raw)


class RollForward:
    """Repair a torn entity from the source of truth, but only the parts that still hold what the
    reader saw: a writer whose SET landed after that read is never overwritten."""

    # KEYS[1] = one part's key; ARGV[1] = the value the reader saw ('' if none); ARGV[2] = the repair.
    # Returns 1 if written, 0 if the key changed since the read (then the later write stays).
    LUA_SET_IF_UNCHANGED = """
    if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
    redis.call('SET', KEYS[1], ARGV[2])
    return 1
    """

    def __init__(self, split, truth):
        self.split, self.truth = split, truth

    def repair(self, seen):
        """Roll `seen` (the torn Read) forward; returns {part: written?}."""
        doc, version = self.truth.load(seen.entity)
        stamp = self.split.repair_stamp(seen, version)
        return {part: bool(r.eval(self.LUA_SET_IF_UNCHANGED, 1, self.split.key(seen.entity, part),
                                  seen.raw.get(part) or "", encode(stamp, doc[part])))
                for part, r in self.split.shards.items()}


# -- shared plumbing ------------------------------------------------------------------------------


class _Split:
    def __init__(self, shards: Mapping[str, redis.Redis], *, prefix: str, truth: SourceOfTruth | None,
                 hooks: dict[str, Callable[..., Any]] | None, log: EventLog | None) -> None:
        if len(shards) < 2:
            raise ValueError("a split entity needs at least two parts (one per shard)")
        self.shards = dict(shards)
        self.parts = list(self.shards)
        self.prefix = prefix
        self.truth = truth
        self.hooks = hooks
        self.log = log
        self.stats = SplitStats()

    def key(self, entity: Any, part: str) -> str:
        return f"{self.prefix}:{entity}:{part}"

    def _record(self, actor: str, kind: str, detail: str) -> None:
        if self.log is not None:
            self.log.record(actor, kind, detail)


class NaiveSplit(_Split):
    """The wrong way: each part is plain JSON, written one after the other; reads trust anything.

    Args:
        shards: part name -> client of the instance that holds it, e.g.
            ``{"profile": fleet["n1"].r, "settings": fleet["n2"].r}``.
        prefix: key prefix (``acct`` -> ``acct:<id>:<part>``).
        truth: where writes go first (optional here).
        hooks: ``"between_sets"(entity, next_part)`` runs before every SET but the first: raise
            there (or kill the next shard) to tear the write.
    """

    def __init__(self, shards: Mapping[str, redis.Redis], *, prefix: str = "acct",
                 truth: SourceOfTruth | None = None, hooks: dict[str, Callable[..., Any]] | None = None,
                 log: EventLog | None = None) -> None:
        super().__init__(shards, prefix=prefix, truth=truth, hooks=hooks, log=log)

    def write(self, entity: Any, parts: Mapping[str, Any]) -> None:
        if self.truth is not None:
            self.truth.save(entity, parts)
        for i, part in enumerate(self.parts):
            if i:
                call_hook(self.hooks, "between_sets", entity, part)
            self.shards[part].set(self.key(entity, part), _json(parts[part]))
        self.stats.add("writes")

    def read(self, entity: Any) -> dict[str, dict | None]:
        """Every part as stored: whether they belong together is anybody's guess."""
        out = {}
        for part in self.parts:
            raw = self.shards[part].get(self.key(entity, part))
            out[part] = json.loads(raw) if raw is not None else None
        return out


class StampedSplit(_Split, Stamped):
    """:class:`Stamped` with what a lab needs around it: the source of truth written first, version
    tokens, fault hooks, an event log, counters, retries, a batched audit and a safe repair.

    Args:
        shards: part name -> client of the instance that holds it (written in this order).
        prefix: key prefix (``acct`` -> ``acct:<id>:<part>``).
        truth: the source of truth, written first and used by :meth:`repair` (and the counter).
        versions: None (token only), "counter" (the truth's row version, needs ``truth``) or
            "timestamp" (``clock()`` in ms). Versioned parts are written with :attr:`LUA_SET_IF_NEWER`.
        clock: the writer's wall clock for "timestamp" (skew it to see the rule fail).
        hooks: ``"between_sets"(entity, next_part)`` before every SET but the first (the fault
            point); ``"before_retry"(entity, attempt, read)`` when a reader backs off.
        log: an EventLog to record writes, faults and reads on (for a timeline).
        token_bytes: random bytes per token (8 -> 16 hex chars in every value).
    """

    # KEYS[1] = one part's key
    # ARGV[1] = the incoming write's version (an integer)
    # ARGV[2] = the encoded value "v<version>|<token>|<json>"
    # Returns 1 if stored; 0 if the key already holds a *newer* version (an equal version is
    # overwritten).
    LUA_SET_IF_NEWER = """
    local cur = redis.call('GET', KEYS[1])
    if cur then
      local have = tonumber(string.match(cur, '^v(%d+)|'))
      if have and have > tonumber(ARGV[1]) then
        return 0
      end
    end
    redis.call('SET', KEYS[1], ARGV[2])
    return 1
    """

    def __init__(self, shards: Mapping[str, redis.Redis], *, prefix: str = "acct",
                 truth: SourceOfTruth | None = None, versions: str | None = None,
                 clock: Callable[[], float] = time.time, hooks: dict[str, Callable[..., Any]] | None = None,
                 log: EventLog | None = None, token_bytes: int = 8) -> None:
        if versions not in VERSIONS:
            raise ValueError(f"versions must be one of {VERSIONS}, got {versions!r}")
        if versions == "counter" and truth is None:
            raise ValueError('versions="counter" takes its counter from the source of truth: pass truth=')
        super().__init__(shards, prefix=prefix, truth=truth, hooks=hooks, log=log)
        self.versions = versions
        self.clock = clock
        self.token_bytes = token_bytes
        self._set_if_newer = {part: c.register_script(self.LUA_SET_IF_NEWER) for part, c in self.shards.items()}

    # -- write ---------------------------------------------------------------------------------
    def new_stamp(self, truth_version: int | None = None) -> Stamp:
        token = secrets.token_hex(self.token_bytes)
        if self.versions == "counter":
            return Stamp(token, truth_version)
        if self.versions == "timestamp":
            return Stamp(token, int(self.clock() * 1000))
        return Stamp(token)

    def repair_stamp(self, seen: Read, truth_version: int | None) -> Stamp:
        """The stamp a roll-forward repair writes. With "timestamp" versions it is not this
        client's clock (a repairer running ahead would stamp the repair into the future, and every
        on-time write after it would be refused): it is the newest version the reader saw, so
        the repair orders like the write it completes and any later write wins."""
        if self.versions != "timestamp":
            return self.new_stamp(truth_version)
        seen_versions = [s.version for s in seen.stamps.values() if s is not None and s.version is not None]
        return Stamp(secrets.token_hex(self.token_bytes), max(seen_versions, default=0))

    def write(self, entity: Any, parts: Mapping[str, Any], *,  # type: ignore[override]  # makes its own stamp
              actor: str = "writer") -> Stamp:
        """Save to the truth, then SET every part with one stamp. Returns the stamp.

        A failure between the SETs (a hook raising, a dead shard) propagates: the write is torn,
        and it is the *readers* who will notice.
        """
        truth_version = self.truth.save(entity, parts) if self.truth is not None else None
        stamp = self.new_stamp(truth_version)
        self._record(actor, "write", f"{entity}: {stamp}")
        for i, part in enumerate(self.parts):
            if i:
                call_hook(self.hooks, "between_sets", entity, part)
            self._set(part, entity, stamp, parts[part])
            self._record(actor, "set", f"{self.key(entity, part)} <- {stamp}")
        self.stats.add("writes")
        return stamp

    def _set(self, part: str, entity: Any, stamp: Stamp, payload: Any) -> bool:
        value = encode(stamp, payload)
        if stamp.version is None:
            self.shards[part].set(self.key(entity, part), value)
            return True
        stored = bool(self._set_if_newer[part](keys=[self.key(entity, part)], args=[stamp.version, value]))
        if not stored:
            self.stats.add("rejected")
        return stored

    # -- read ----------------------------------------------------------------------------------
    def read(self, entity: Any) -> Read:
        """GET every part and compare stamps (one round trip per shard)."""
        res = Stamped.read(self, entity)
        if res.status == TORN:
            self.stats.add("torn_reads")
        return res

    def read_consistent(self, entity: Any, *, retries: int = 3, backoff: float = 0.02,
                        repair: bool = True, actor: str = "reader") -> Read:
        """Read; on a mismatch back off and re-read (a write may be in flight); repair only if the
        mismatch outlives the retries.

        Exponential backoff: ``backoff``, ``2*backoff``, ... This makes repairing a write that is
        merely slow *rarer*, never impossible (a writer can stall for longer than any back-off);
        what keeps the repair harmless is :meth:`repair`'s compare-and-set.
        """
        res = self.read(entity)
        for attempt in range(1, retries + 1):
            if res.status != TORN:
                return res
            self._record(actor, "mismatch", f"{entity}: retry {attempt} after backing off")
            call_hook(self.hooks, "before_retry", entity, attempt, res)
            time.sleep(backoff * 2 ** (attempt - 1))
            self.stats.add("retries")
            res = self.read(entity)
        if res.status == TORN and repair:
            self._record(actor, "repair", f"{entity}: still torn after {retries} retries")
            self.repair(entity, seen=res)
            res = self.read(entity)
        return res

    def read_or_repair_at_once(self, entity: Any, *, actor: str = "reader") -> Read:
        """The over-eager reader: any mismatch is "repaired" on the spot (a false repair when the
        write is only in flight)."""
        res = self.read(entity)
        if res.status == TORN:
            self._record(actor, "repair", f"{entity}: repaired at once")
            self.repair(entity, seen=res)
        return res

    def audit(self, entities: Iterable[Any], *, batch: int = 500) -> list[Any]:
        """Entities whose parts disagree, by batched MGETs (one per shard per batch). Sorted."""
        entities = list(entities)
        torn = []
        for i in range(0, len(entities), batch):
            chunk = entities[i:i + batch]
            raw = {part: self.shards[part].mget([self.key(e, part) for e in chunk]) for part in self.parts}
            for j, e in enumerate(chunk):
                status = verdict({part: decode(raw[part][j])[0] for part in self.parts})
                if status == TORN:
                    torn.append(e)
        return torn

    # -- repair --------------------------------------------------------------------------------
    def repair(self, entity: Any, *, seen: Read | None = None, actor: str = "repair") -> dict[str, bool]:
        """Roll forward from the source of truth (:class:`RollForward`): every part the reader saw
        (``seen``, or a fresh read) is rewritten with one fresh stamp, unless a writer changed it
        since. Returns ``{part: written?}``."""
        if self.truth is None:
            raise ValueError("roll-forward repair needs the source of truth: pass truth=")
        if self.truth.load(entity) is None:
            raise KeyError(f"entity {entity} is not in the source of truth")
        seen = seen if seen is not None else Stamped.read(self, entity)
        written = RollForward(self, self.truth).repair(seen)
        self.stats.add("repairs")
        self.stats.add("repair_skips", sum(1 for ok in written.values() if not ok))
        self._record(actor, "repair", f"{entity}: rolled forward {sorted(p for p, ok in written.items() if ok)}")
        return written


class MarkedSplit(_Split):
    """Parts written under txid-tagged keys, then a commit marker pointing at the txid, written last.

    Keys: ``<prefix>:<id>:<part>:<txid>`` on each part's shard, and the marker
    ``<prefix>:<id>:committed`` (value: the txid) on the first shard. A reader GETs the marker, then
    the parts of *that* txid: it never mixes two writes, and a write that died before its marker
    is simply not there. Superseded parts get a TTL of ``grace`` seconds (a reader that has just
    read the old marker can still fetch them); parts of writes that never committed stay as
    orphans until a sweeper removes them.

    Args:
        shards: part name -> client; the marker lives with the first part.
        prefix: key prefix.
        truth: the source of truth, written first (optional).
        hooks: ``"between_sets"(entity, next_part)`` and ``"before_marker"(entity, txid)``.
        grace: seconds superseded parts stay readable.
    """

    def __init__(self, shards: Mapping[str, redis.Redis], *, prefix: str = "acct",
                 truth: SourceOfTruth | None = None, hooks: dict[str, Callable[..., Any]] | None = None,
                 log: EventLog | None = None, grace: float = 60.0) -> None:
        super().__init__(shards, prefix=prefix, truth=truth, hooks=hooks, log=log)
        self.grace = grace
        self.marker_shard = self.shards[self.parts[0]]

    def data_key(self, entity: Any, part: str, txid: str) -> str:
        return f"{self.key(entity, part)}:{txid}"

    def marker_key(self, entity: Any) -> str:
        return f"{self.prefix}:{entity}:committed"

    def write(self, entity: Any, parts: Mapping[str, Any], *, actor: str = "writer") -> str:
        """Save to the truth, write every part under a new txid, then move the marker. Returns the txid."""
        if self.truth is not None:
            self.truth.save(entity, parts)
        txid = secrets.token_hex(8)
        for i, part in enumerate(self.parts):
            if i:
                call_hook(self.hooks, "between_sets", entity, part)
            self.shards[part].set(self.data_key(entity, part, txid), _json(parts[part]))
            self._record(actor, "set", f"{self.data_key(entity, part, txid)}")
        call_hook(self.hooks, "before_marker", entity, txid)
        old = self.marker_shard.set(self.marker_key(entity), txid, get=True)  # the commit point
        self._record(actor, "commit", f"{self.marker_key(entity)} -> {txid}")
        if old:  # the previous write's parts: readable for `grace` seconds more, then gone
            for part in self.parts:
                self.shards[part].expire(self.data_key(entity, part, old), max(1, int(self.grace)))
        self.stats.add("writes")
        return txid

    def read(self, entity: Any, *, retries: int = 3) -> Read:
        """Follow the marker; parts of uncommitted writes are never read.

        A part missing under a committed txid means it was garbage-collected under a slow reader:
        re-read the marker (``retries`` times).
        """
        for _ in range(retries + 1):
            txid = self.marker_shard.get(self.marker_key(entity))
            if txid is None:
                return Read(entity, MISSING, {p: None for p in self.parts}, {p: None for p in self.parts})
            payloads: dict[str, dict | None] = {}
            for part in self.parts:
                raw = self.shards[part].get(self.data_key(entity, part, txid))
                payloads[part] = json.loads(raw) if raw is not None else None
            stamps = {p: (Stamp(txid) if payloads[p] is not None else None) for p in self.parts}
            status = verdict(stamps)
            if status == OK:
                return Read(entity, OK, payloads, stamps)
            self.stats.add("retries")
        self.stats.add("torn_reads")
        return Read(entity, TORN, payloads, stamps)

    def orphans(self, entity: Any) -> list[str]:
        """Part keys of this entity that no marker points at and that have no TTL (crashed writes)."""
        committed = self.marker_shard.get(self.marker_key(entity))
        out = []
        for part in self.parts:
            c = self.shards[part]
            for k in c.scan_iter(match=f"{self.key(entity, part)}:*", count=1000):
                if not k.endswith(f":{committed}") and c.ttl(k) == -1:
                    out.append(k)
        return sorted(out)
