"""What the queue and messaging notebooks need from the runtime, in one tested place.

Background work is where messages get lost or run twice without anyone noticing, so these
notebooks never take a queue's word for what happened:

* :class:`Sink`: an independent record, in SQLite, of what was produced and of every side effect
  a consumer ran (one row per run, so a message handled twice shows twice), shared by the
  notebook and its worker processes through one file; :meth:`Sink.report` counts the losses and
  duplicates.
* :class:`Sampler`: calls a function every few ms in a thread (an invariant sample, a reaper
  pass) from ``start()`` to ``stop()``, keeping what it returned and raising what it raised.
* :class:`CommandStats`: what the server itself executed during a block (``INFO commandstats``
  before and after: calls and server time per command).
* :func:`xread_entries`: the ``(id, fields)`` entries of an ``XREAD``/``XREADGROUP`` reply, RESP2 or
  RESP3.
* :func:`standby` / :func:`takeover`: a worker process that waits, connected, until the notebook
  lets it go (a start gate, or a standby that replaces a killed worker).
* :func:`kill_client`: ``CLIENT KILL`` of every connection with a name (a network blip, as the
  server sees it).
* :func:`config`: ``CONFIG SET`` for the length of a block, restored afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .db import Database
from .race import wait_until
from .tables import Table

__all__ = [
    "CommandStats", "Sampler", "Sink", "close_sinks", "commandstats", "config", "kill_client",
    "standby", "takeover", "xread_entries",
]


# -- the sink ---------------------------------------------------------------------------------------


_OPEN: list[Sink] = []


class Sink:
    """An independent record of a queue's work, in SQLite.

    ``produce(id)`` records an id the producer handed to the queue (once, however often it is
    called); ``record(id, worker)`` records one run of its side effect: a row in ``effects``
    (append-only, so an id handled twice has two rows) and, in the same transaction, a row in the
    idempotent ``results`` table (one per id, the first worker's). ``run`` keeps the rows of
    several experiments apart in one file; ``info`` is free text (a job name, a stream entry id).

    ``Sink()`` is a fresh file in a private temp dir (removed by :meth:`close`); ``Sink(path)``
    opens an existing one, so worker processes write to the notebook's sink. Threads may share
    one ``Sink``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.db = Database(path=path)
        self.path = str(self.db.path)
        self._lock = threading.Lock()                    # one transaction at a time per connection
        self.db.execute("PRAGMA busy_timeout = 10000")   # other processes write to the same file
        self.db.execute("PRAGMA synchronous = NORMAL")   # WAL: no fsync per commit (kill -9 loses nothing)
        self.db.execute("CREATE TABLE IF NOT EXISTS produced (run TEXT NOT NULL, id TEXT NOT NULL,"
                        " info TEXT NOT NULL DEFAULT '', PRIMARY KEY (run, id))")
        self.db.execute("CREATE TABLE IF NOT EXISTS effects (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                        " run TEXT NOT NULL, id TEXT NOT NULL, worker TEXT NOT NULL, info TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS results (run TEXT NOT NULL, id TEXT NOT NULL,"
                        " worker TEXT NOT NULL, PRIMARY KEY (run, id))")
        _OPEN.append(self)

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self.db.execute(sql, params)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # -- writing --
    def produce(self, *ids: str, run: str = "", info: str = "") -> None:
        """Record ids handed to the queue (in one transaction; an id already recorded stays as it was)."""
        self._transaction([("INSERT OR IGNORE INTO produced (run, id, info) VALUES (?, ?, ?)", (run, str(i), info))
                           for i in ids])

    def record(self, id: str, worker: str = "", *, run: str = "", info: str = "") -> None:
        """One run of ``id``'s side effect by ``worker``: logged, and its result stored once per id."""
        self._transaction([
            ("INSERT INTO effects (run, id, worker, info) VALUES (?, ?, ?, ?)", (run, str(id), worker, info)),
            ("INSERT OR IGNORE INTO results (run, id, worker) VALUES (?, ?, ?)", (run, str(id), worker)),
        ])

    def clear(self, run: str = "") -> None:
        """Forget ``run``'s rows (a cell run a second time starts from nothing)."""
        self._transaction([(f"DELETE FROM {table} WHERE run = ?", (run,))
                           for table in ("produced", "effects", "results")])

    # -- reading --
    def produced(self, run: str = "") -> list[str]:
        """The ids produced in ``run``, in the order they were recorded."""
        return [i for (i,) in self.db.execute("SELECT id FROM produced WHERE run = ? ORDER BY rowid", (run,))]

    def produced_info(self, run: str = "") -> dict[str, str]:
        return dict(self.db.execute("SELECT id, info FROM produced WHERE run = ? ORDER BY rowid", (run,)))

    def effects(self, run: str = "") -> list[tuple[str, str, str]]:
        """Every side effect run in ``run``, in order: (id, worker, info)."""
        return [(i, w, x) for i, w, x in self.db.execute(
            "SELECT id, worker, info FROM effects WHERE run = ? ORDER BY seq", (run,))]

    def ids(self, run: str = "") -> list[str]:
        """The id of every side effect run, in order (an id handled twice appears twice)."""
        return [i for (i,) in self.db.execute("SELECT id FROM effects WHERE run = ? ORDER BY seq", (run,))]

    def count(self, run: str = "") -> int:
        """How many side effects ran."""
        return int(self.db.execute("SELECT COUNT(*) FROM effects WHERE run = ?", (run,))[0][0])

    def counts(self, run: str = "") -> collections.Counter[str]:
        """How many times each id's side effect ran."""
        return collections.Counter(dict(self.db.execute(
            "SELECT id, COUNT(*) FROM effects WHERE run = ? GROUP BY id", (run,))))

    def results(self, run: str = "") -> set[str]:
        """The ids in the idempotent results table (each once, however often it ran)."""
        return {i for (i,) in self.db.execute("SELECT id FROM results WHERE run = ?", (run,))}

    def by_worker(self, run: str = "") -> dict[str, int]:
        """Side effects run per worker."""
        return dict(sorted(self.db.execute(
            "SELECT worker, COUNT(*) FROM effects WHERE run = ? GROUP BY worker", (run,))))

    def last(self, run: str = "") -> tuple[str, str, str] | None:
        """The last side effect run: (id, worker, info), or None."""
        rows = self.db.execute("SELECT id, worker, info FROM effects WHERE run = ? ORDER BY seq DESC LIMIT 1",
                               (run,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def report(self, produced: Iterable[str] | None = None, run: str = "") -> dict[str, Any]:
        """Losses and duplicates, counted here: ``produced`` (default: the ids recorded with
        :meth:`produce`) against the side effects the sink received."""
        want = [str(i) for i in (self.produced(run) if produced is None else produced)]
        counts, wanted = self.counts(run), set(want)
        return dict(produced=len(wanted), effects=sum(counts.values()), distinct=len(counts),
                    lost=sorted(wanted - set(counts)),
                    duplicated={i: n for i, n in sorted(counts.items()) if n > 1},
                    unknown=sorted(set(counts) - wanted),
                    results_match=self.results(run) == wanted)

    def table(self, produced: Iterable[str] | None = None, run: str = "",
              title: str = "the sink (SQLite) counts") -> Table:
        rep = self.report(produced, run)
        dup = ", ".join(f"{i} x{n}" for i, n in rep["duplicated"].items()) or "none"
        return Table(["produced", "side effects run", "distinct ids", "lost", "duplicated"],
                     [(rep["produced"], rep["effects"], rep["distinct"], ", ".join(rep["lost"]) or "none", dup)],
                     title=title)

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        self.db.close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sink({self.path!r})"


def close_sinks() -> None:
    """Close every sink this process opened (a fresh one's file is deleted)."""
    while _OPEN:
        _OPEN[-1].close()


# -- sampling in a thread ---------------------------------------------------------------------------


class Sampler:
    """Call ``read()`` every ``every_ms`` ms in a daemon thread from :meth:`start` to :meth:`stop`.

    ``samples`` holds ``(clock(), value)`` per call; :meth:`stop` ends the thread and, with
    ``final=True``, takes one last sample (the end state, after the work it watched). An exception
    in ``read`` ends the thread and is raised by :meth:`stop`. Use it for an invariant checked at
    every sample, or for a reaper that runs while workers do (``keep=False``: values not kept).
    """

    def __init__(self, read: Callable[[], Any], every_ms: float = 10.0, *, final: bool = True,
                 keep: bool = True, clock: Callable[[], float] = time.monotonic, name: str = "sampler") -> None:
        self.read, self.every_ms, self.final, self.keep, self.clock = read, every_ms, final, keep, clock
        self.samples: list[tuple[float, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _take(self) -> None:
        value = self.read()
        if self.keep:
            self.samples.append((self.clock(), value))

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._take()
                self._stop.wait(self.every_ms / 1000)
        except BaseException as exc:   # raised by stop(), in the thread that asked
            self.error = exc

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> list[tuple[float, Any]]:
        """End the thread, take the final sample, raise what ``read`` raised; returns the samples.
        Only the first call does this; later ones return the samples."""
        if self._stopped:
            return self.samples
        self.cancel(timeout)
        self._stopped = True
        if self.error is not None:
            raise self.error
        if self.final:
            self._take()
        return self.samples

    def cancel(self, timeout: float = 10.0) -> None:
        """End the thread and wait for it, nothing more (for clean-up after a failure)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self._thread.name} still running after {timeout:g} s")

    def values(self) -> list[Any]:
        return [v for _, v in self.samples]

    def violations(self, invariant: Callable[[Any], bool]) -> list[tuple[float, Any]]:
        """The samples at which ``invariant(value)`` was false."""
        return [(t, v) for t, v in self.samples if not invariant(v)]

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()
        else:                          # the block failed: end the thread, keep the block's error
            self.cancel()


# -- the server's own command counts ------------------------------------------------------------------


def commandstats(r: Any) -> dict[str, dict[str, float]]:
    """``INFO commandstats`` as {command: {"calls": n, "usec": total server time}}."""
    return {name.removeprefix("cmdstat_"): {"calls": int(row["calls"]), "usec": float(row["usec"])}
            for name, row in r.info("commandstats").items()}


class CommandStats:
    """What the server executed during a block: ``INFO commandstats`` read before and after.

    ``calls`` and ``usec`` hold the per-command differences (only commands that ran); the
    ``INFO`` calls this makes are left out (``ignore``)::

        with CommandStats(r) as cs:
            queue.claim()
        cs.calls            # {"eval": 1}
    """

    def __init__(self, r: Any, *, ignore: Iterable[str] = ("info",)) -> None:
        self.r, self.ignore = r, set(ignore)
        self.before: dict[str, dict[str, float]] = {}
        self.calls: dict[str, int] = {}
        self.usec: dict[str, float] = {}

    def start(self) -> CommandStats:
        self.before = commandstats(self.r)
        return self

    def stop(self) -> CommandStats:
        after, zero = commandstats(self.r), {"calls": 0, "usec": 0.0}
        self.calls, self.usec = {}, {}
        for name, row in after.items():
            old = self.before.get(name, zero)
            if name in self.ignore or row["calls"] == old["calls"]:
                continue
            self.calls[name] = int(row["calls"] - old["calls"])
            self.usec[name] = row["usec"] - old["usec"]
        return self

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def usec_per_call(self, command: str) -> float:
        """Server time per call of ``command`` in the block (0.0 if it never ran)."""
        n = self.calls.get(command, 0)
        return self.usec.get(command, 0.0) / n if n else 0.0

    def __enter__(self) -> CommandStats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- stream replies ------------------------------------------------------------------------------


def xread_entries(reply: Any, stream: str | None = None) -> list[tuple[str, dict]]:
    """The ``(id, fields)`` entries of an ``XREAD``/``XREADGROUP`` reply, of ``stream`` or of every
    stream in it. redis-py gives ``[[name, entries]]`` over RESP2 and ``{name: [entries]}`` over
    RESP3 (one level deeper); no reply (a timed-out BLOCK) gives ``[]``."""
    if not reply:
        return []
    pairs = list(reply.items()) if isinstance(reply, dict) else [(name, entries) for name, entries in reply]
    out: list[tuple[str, dict]] = []
    for name, entries in pairs:
        if stream is not None and name != stream:
            continue
        while entries and isinstance(entries[0], list):   # RESP3 nests one level deeper
            entries = entries[0]
        out += [(entry_id, fields) for entry_id, fields in entries]
    return out


# -- worker processes that wait to be let go ------------------------------------------------------------


def standby(r: Any, key: str, *, consume: bool = False, timeout: float = 60.0) -> None:
    """In a worker: wait, connected, until the key ``key`` exists.

    A start gate (``consume=False``: every waiting worker goes once the notebook sets the key) or
    a standby that replaces a killed worker (``consume=True``: the one that deletes the key goes,
    so one key lets exactly one standby go). Raises TimeoutError after ``timeout`` seconds.
    """
    ready = (lambda: r.delete(key) == 1) if consume else (lambda: r.exists(key) == 1)
    wait_until(ready, timeout, f"the key {key}")


def takeover(r: Any, key: str, timeout: float = 30.0) -> None:
    """In the notebook: let one standby worker (``standby(r, key, consume=True)``) go, and return
    once it has (it deleted the key)."""
    r.set(key, 1)
    wait_until(lambda: not r.exists(key), timeout, f"a standby worker to take {key}")


# -- faults and settings ------------------------------------------------------------------------------


def kill_client(r: Any, name: str) -> int:
    """``CLIENT KILL`` every connection named ``name`` (``CLIENT SETNAME``): the server closes it,
    as it would after a network blip. Returns how many it closed."""
    ids = [c["id"] for c in r.client_list() if c.get("name") == name]
    return sum(int(r.client_kill_filter(_id=cid)) for cid in ids)


@contextlib.contextmanager
def config(r: Any, settings: dict[str, Any] | None = None, **kw: Any) -> Iterator[dict[str, str]]:
    """``CONFIG SET`` for the length of a ``with`` block; the old values come back afterwards, also
    when the block fails. Keywords use ``_`` for ``-`` (``maxmemory_policy="noeviction"``). A value
    may be a function, called just before its ``CONFIG SET`` (a limit computed from
    ``used_memory`` at that moment). Settings are applied in order. Yields the old values."""
    wanted = {**(settings or {}), **{k.replace("_", "-"): v for k, v in kw.items()}}
    old = {k: r.config_get(k)[k] for k in wanted}
    try:
        for k, v in wanted.items():
            r.config_set(k, v() if callable(v) else v)
        yield old
    finally:
        for k, v in old.items():
            r.config_set(k, v)
