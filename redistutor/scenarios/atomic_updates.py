"""Scenarios for notebooks/06-atomic-updates.ipynb: the races, trials and measurements.

Each helper is one line in the notebook and returns plain data or a view (``Table``); the pattern
itself (``watch_update``, ``CompareAndSet`` and the classes built on them) lives in
``redistutor/patterns/atomic_updates.py``. Races are made deterministic with pause points and
barriers: every "the reader saw X" below is forced, not hoped for.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from .. import charts
from ..db import Database
from ..patterns.atomic_updates import (
    Accounts,
    Counter,
    Idempotency,
    InsufficientFunds,
    LeaseExpired,
    OneTimeToken,
    ShadowHash,
    watch_update,
)
from ..race import PausePoint, run_in_thread, wait_until
from ..tables import Table
from ..timeline import run_threads


def everyone_reads_first(n: int) -> Callable[..., None]:
    """A hook where each of ``n`` threads waits, at its FIRST call only, until all ``n`` arrived.
    Placed between a read and a write, it makes all ``n`` first reads happen before any write."""
    barrier, seen, lock = threading.Barrier(n, timeout=20), set(), threading.Lock()

    def hook(*_: Any) -> None:
        me = threading.get_ident()
        with lock:
            first = me not in seen
            seen.add(me)
        if first:
            barrier.wait()

    return hook


# -- the lost update, and WATCH ------------------------------------------------------------------


@dataclass
class TwoClients:
    a_read: int        # what client A read before it was frozen
    b_wrote: int       # what client B wrote while A was frozen
    a_wrote: int       # what A's call returned (the value it wrote)
    final: str         # the key afterwards
    counter: Counter   # client A's counter (its stats: attempts, commits, aborts)
    steps: Table       # the interleaving, step by step


def two_clients(r: redis.Redis, prefix: str, method: str = "naive_incr", start: int = 7) -> TwoClients:
    """Client A runs ``method`` and is frozen between its GET and its write; client B increments
    in full; then A resumes. ``method`` is ``"naive_incr"`` or ``"watch_incr"``."""
    pause = PausePoint("after_get")
    a_counter = Counter(r, prefix=prefix, hooks={"after_get": pause})
    b_counter = Counter(r, prefix=prefix)
    key = a_counter.key("likes")
    r.set(key, start)
    a = run_in_thread(getattr(a_counter, method), "likes")
    _, a_read = pause.wait_reached()
    b_wrote = b_counter.naive_incr("likes")
    pause.release()
    a_wrote = a.result(timeout=10)
    final = r.get(key)
    if method == "watch_incr":
        rows = [[1, "A", f"WATCH likes · GET likes → {a_read}", a_read],
                [2, "B", f"GET likes → {a_read} · SET likes {b_wrote}", b_wrote],
                [3, "A", "MULTI · SET · EXEC → aborted (likes changed)", b_wrote],
                [4, "A", f"WATCH · GET → {b_wrote} · MULTI · SET · EXEC → OK", a_wrote]]
    else:
        rows = [[1, "A", f"GET likes → {a_read}", a_read],
                [2, "B", f"GET likes → {a_read} · SET likes {b_wrote}", b_wrote],
                [3, "A", f"SET likes {a_wrote}", a_wrote]]
    steps = Table(["step", "client", "sends", "likes afterwards"], rows,
                  title=f"{method}: two increments of {start}", note=f"likes = {final}")
    return TwoClients(a_read, b_wrote, a_wrote, final, a_counter, steps)


def at_scale(r: redis.Redis, prefix: str, method: str, clients: int = 20, each: int = 100) -> Counter:
    """``clients`` threads × ``each`` increments of one key. ``naive_incr``: every thread reads
    before any writes, in every round (a cyclic barrier); ``watch_incr``: in the first round."""
    if method == "naive_incr":
        rounds = threading.Barrier(clients, timeout=20)
        hook = lambda *_: rounds.wait()  # noqa: E731
    else:
        hook = everyone_reads_first(clients)
    c = Counter(r, prefix=prefix, hooks={"after_get": hook})
    r.delete(c.key("views"))
    run_threads(lambda actor, log: [getattr(c, method)("views") for _ in range(each)], clients)
    return c


def what_aborts_exec(r: redis.Redis, other: redis.Redis, key: str) -> tuple[Table, dict[str, str]]:
    """WATCH key, read it, let one thing happen, then MULTI/SET/EXEC: which ones abort EXEC?"""

    def attempt(between: Callable[[redis.client.Pipeline], Any], px: int | None = None) -> str:
        r.set(key, "old", px=px)
        with r.pipeline(transaction=True) as pipe:
            pipe.watch(key)
            pipe.get(key)
            between(pipe)
            pipe.multi()
            pipe.set(key, "new")
            try:
                pipe.execute()
                return "committed"
            except redis.WatchError:
                return "aborted"

    def until_gone(_pipe: Any) -> None:
        # EXISTS deletes an expired key
        wait_until(lambda: not other.exists(key), 5, f"{key} to expire", step=0.002)

    cases = {
        "nothing": attempt(lambda p: None),
        "another client writes the key": attempt(lambda p: other.set(key, "theirs")),
        "the key expires (SET … PX 20)": attempt(until_gone, px=20),
        "this connection writes the key": attempt(lambda p: p.set(key, "mine")),
    }
    # WATCH on one connection, MULTI/EXEC on another: the second one watched nothing.
    r.set(key, "old")
    watcher = r.pipeline(transaction=True)
    watcher.watch(key)
    other.set(key, "theirs")
    with r.pipeline(transaction=True) as p2:
        p2.set(key, "new")
        cases["another client writes; EXEC sent on a different connection"] = (
            "committed" if p2.execute() == [True] else "aborted")
    watcher.reset()
    table = Table(["between WATCH and EXEC", "EXEC"], [[k, v] for k, v in cases.items()],
                  title="What makes EXEC abort")
    return table, cases


# -- money: transfers ----------------------------------------------------------------------------


def overlapping_transfers(r: redis.Redis, prefix: str, method: str) -> dict[str, Any]:
    """a holds 100. T1 sends 80 a→b and is frozen after its check; T2 sends 80 a→c in full;
    T1 resumes. ``method``: ``naive_transfer`` or ``watch_transfer``. (A Lua ``transfer`` has no
    gap to freeze: see :func:`racing_transfers`.)"""
    bank = Accounts(r, prefix=prefix)
    pause = PausePoint("after_read")
    bank.hooks = {"after_read": pause}
    bank.open(a=100, b=0, c=0)
    t1 = run_in_thread(getattr(bank, method), "a", "b", 80)
    pause.wait_reached()
    bank.hooks = None
    getattr(bank, method)("a", "c", 80)
    pause.release()
    try:
        t1_got = f"sent, a left with {t1.result(timeout=10)}"
    except InsufficientFunds as exc:
        t1_got = f"refused: {exc}"
    balances = bank.balances("a", "b", "c")
    return {"method": method, "T1": t1_got, **balances, "total": sum(balances.values()),
            "aborts": bank.stats.aborts, "commits": bank.stats.commits}


def racing_transfers(r: redis.Redis, prefix: str) -> dict[str, Any]:
    """The same two transfers of 80 out of 100, as Lua scripts, released together by a barrier."""
    bank = Accounts(r, prefix=prefix)
    bank.open(a=100, b=0, c=0)
    got = run_threads(lambda actor, log: _try(bank.transfer, "a", "bc"[actor.endswith("2")], 80), 2)
    balances = bank.balances("a", "b", "c")
    refused = sum(1 for g in got if g.startswith("refused"))
    return {"method": "transfer (Lua)", "T1": f"{refused} of 2 refused", **balances,
            "total": sum(balances.values()), "aborts": 0}


def _try(fn: Callable[..., Any], *args: Any) -> str:
    try:
        return f"sent, {fn(*args)} left"
    except InsufficientFunds as exc:
        return f"refused: {exc}"


def transfers_table(rows: list[dict[str, Any]]) -> Table:
    cols = ["method", "T1", "a", "b", "c", "total", "aborts"]
    return Table(cols, [[row[c] for c in cols] for row in rows],
                 title="Two transfers of 80 out of an account holding 100",
                 note="a correct bank ends with total 100 and one transfer refused")


def many_transfers(r: redis.Redis, prefix: str, clients: int = 10, each: int = 5) -> dict[str, Any]:
    """``clients`` threads × ``each`` Lua transfers of 60–140 between four accounts of 150."""
    bank = Accounts(r, prefix=prefix)
    names = ["a", "b", "c", "d"]
    bank.open(**{n: 150 for n in names})

    def client(actor: str, log: Any) -> tuple[int, int]:
        i, done, refused = int(actor.rsplit("-", 1)[1]), 0, 0
        for j in range(each):
            src, dst = names[(i + j) % 4], names[(i + 2 * j + 1) % 4]
            if src == dst:
                dst = names[(names.index(src) + 1) % 4]
            try:
                bank.transfer(src, dst, 60 + 20 * j)
                done += 1
            except InsufficientFunds:
                refused += 1
        return done, refused

    results = run_threads(client, clients)
    final = bank.balances(*names)
    return {"applied": sum(d for d, _ in results), "refused": sum(f for _, f in results),
            "balances": final, "total": sum(final.values())}


def no_rollback(r: redis.Redis, key: Callable[..., str]) -> dict[str, Any]:
    """A MULTI whose middle command fails at EXEC time; one whose command fails while queuing; a
    Lua script that errors after a write. What stays written?"""
    bal, name, log, lua_key = key("tx:balance"), key("tx:name"), key("tx:log"), key("tx:lua")
    r.set(bal, 100)
    r.set(name, "alice")
    r.delete(log, lua_key)
    with r.pipeline(transaction=True) as tx:
        tx.decrby(bal, 30)
        tx.incr(name)  # fails at EXEC time: "value is not an integer"
        tx.set(log, "charged 30")
        replies = tx.execute(raise_on_error=False)
    after_exec = dict(zip(["balance", "name", "log"], r.mget(bal, name, log)))
    with r.pipeline(transaction=True) as tx:
        tx.decrby(bal, 30)
        tx.execute_command("SET", key("tx:oops"))  # wrong arity: rejected while queuing
        try:
            tx.execute()
            queuing = "applied"
        except redis.ResponseError:
            queuing = "error while queuing: EXECABORT"
    try:
        r.eval("redis.call('SET', KEYS[1], 'written'); return redis.call('INCR', KEYS[2])", 2, lua_key, name)
        lua = "no error"
    except redis.ResponseError as exc:
        lua = str(exc).split(" script:")[0]
    shown = ", ".join(type(x).__name__ if isinstance(x, Exception) else str(x) for x in replies)
    rows = [["MULTI: DECRBY · INCR <text> · SET", shown,
             f"balance {after_exec['balance']}, log {after_exec['log']!r}"],
            ["MULTI: DECRBY · SET <missing arg>", queuing, f"balance {r.get(bal)}"],
            ["EVAL: SET · INCR <text>", lua, f"tx:lua = {r.get(lua_key)!r}"]]
    return {"replies": replies, "after_exec": after_exec, "balance_after_abort": r.get(bal),
            "lua_key": r.get(lua_key), "queuing": queuing,
            "table": Table(["sent", "reply", "state afterwards"], rows, title="No rollback")}


# -- shadow key + RENAME -------------------------------------------------------------------------


def profile(version: int, fields: int = 2000) -> dict[str, str]:
    """A hash of ``fields`` fields, every value ``v<version>``: one complete version."""
    return {f"field{i:04}": f"v{version}" for i in range(fields)}


def describe(h: dict[str, str]) -> str:
    versions = sorted(set(h.values()))
    return f"{len(h)} fields, {'/'.join(versions)}" if h else "(missing)"


def rebuild_seen(r: redis.Redis, reader: redis.Redis, prefix: str, method: str,
                 fields: int = 2000, chunk: int = 200) -> tuple[ShadowHash, list[dict[str, str]]]:
    """Version 1 is live; ``method`` replaces it with version 2, ``chunk`` fields per round trip,
    and after every chunk a second client reads the live key: what any reader would see."""
    seen: list[dict[str, str]] = []
    sh = ShadowHash(r, prefix=prefix, chunk=chunk)
    sh.rebuild("p1", profile(1, fields))
    sh.hooks = {"after_chunk": lambda i, n: seen.append(reader.hgetall(sh.key("p1")))}
    getattr(sh, method)("p1", profile(2, fields))
    sh.hooks = None
    return sh, seen


def seen_table(naive: list[dict[str, str]], shadow: list[dict[str, str]], rows: int = 4) -> Table:
    return Table(["after chunk", "naive rebuild: reader sees", "shadow + RENAME: reader sees"],
                 [[i + 1, describe(a), describe(b)] for i, (a, b) in enumerate(zip(naive, shadow))][:rows],
                 title="What a second client reads between the chunks of a rebuild",
                 note=f"(first {rows} of {len(naive)} chunks)")


def free_running(r: redis.Redis, reader: redis.Redis, prefix: str, method: str, rebuilds: int = 10,
                 fields: int = 2000) -> tuple[int, int]:
    """A reader thread HGETALLs in a loop while ``method`` rebuilds ``rebuilds`` times, no pauses.
    Returns ``(samples, broken)``: broken = not one complete version."""
    sh = ShadowHash(r, prefix=prefix, chunk=200)
    sh.rebuild("p2", profile(0, fields))
    stop, samples, broken = threading.Event(), [0], [0]

    def read_loop() -> None:
        while not stop.is_set():
            h = reader.hgetall(sh.key("p2"))
            samples[0] += 1
            if len(h) != fields or len(set(h.values())) != 1:
                broken[0] += 1

    t = threading.Thread(target=read_loop, daemon=True)
    t.start()
    for v in range(1, rebuilds + 1):
        getattr(sh, method)("p2", profile(v, fields))
    stop.set()
    t.join(10)
    return samples[0], broken[0]


# -- idempotency keys ----------------------------------------------------------------------------


def payments_db() -> Database:
    """A SQLite database with two payment tables: ``payments`` (any row) and ``payments_unique``
    (``request_id`` UNIQUE: the database itself refuses a second payment for one request)."""
    db = Database()
    db.execute("CREATE TABLE payments (request_id TEXT, amount INTEGER)")
    db.execute("CREATE TABLE payments_unique (request_id TEXT UNIQUE, amount INTEGER)")
    return db


def charge(db: Database, request_id: str, amount: int = 50, *, table: str = "payments",
           before: Callable[[], Any] | None = None, by: str = "") -> Callable[[], dict[str, Any]]:
    """The side effect: record a payment (``before()`` runs first, e.g. a slow provider); its
    result names the caller ``by`` when given."""

    def side_effect() -> dict[str, Any]:
        if before:
            before()
        db.execute(f"INSERT INTO {table} VALUES (?, ?)", (request_id, amount))
        return {"charged": amount, "request": request_id, **({"by": by} if by else {})}

    return side_effect


def payments(db: Database, request_id: str, table: str = "payments") -> int:
    return db.execute(f"SELECT COUNT(*) FROM {table} WHERE request_id = ?", (request_id,))[0][0]


def naive_retries(r: redis.Redis, db: Database, prefix: str, request_id: str = "order-41") -> int:
    """Two retries of one request through ``naive_run``, both past their GET before either
    charges (a barrier). Returns the number of payments recorded."""
    both_checked = threading.Barrier(2, timeout=10)
    idem = Idempotency(r, prefix=prefix, hooks={"after_check": lambda *_: both_checked.wait()})
    run_threads(lambda actor, log: idem.naive_run(request_id, charge(db, request_id)), 2)
    return payments(db, request_id)


def concurrent_retries(r: redis.Redis, db: Database, prefix: str, request_id: str = "order-42",
                       n: int = 10) -> list[Any]:
    """``n`` retries of one request through ``Idempotency.run``, released together."""
    idem = Idempotency(r, prefix=prefix)
    return run_threads(lambda actor, log: idem.run(request_id, charge(db, request_id)), n)


def lease_expires(r: redis.Redis, db: Database, prefix: str, *, table: str,
                  request_id: str = "order-7") -> dict[str, Any]:
    """A's side effect outlives its 50 ms lease; B (a retry) claims the request and charges; then
    A's side effect completes. Everything is ordered by events, not by sleeps."""
    idem = Idempotency(r, prefix=prefix, lease=0.05)
    key = idem.key(request_id)
    r.delete(key)
    a_started, a_may_finish = threading.Event(), threading.Event()

    def slow_provider() -> None:
        a_started.set()
        a_may_finish.wait(10)

    a = run_in_thread(idem.run, request_id, charge(db, request_id, table=table, before=slow_provider, by="A"))
    if not a_started.wait(10):
        raise RuntimeError(f"{key}: caller A never started its side effect")
    wait_until(lambda: not r.exists(key), 5, "A's claim to expire")
    b = idem.run(request_id, charge(db, request_id, table=table, by="B"))
    a_may_finish.set()
    try:
        a_got = f"returned {a.result(timeout=10).result}"
    except (LeaseExpired, sqlite3.IntegrityError) as exc:
        a_got = type(exc).__name__
    return {"guard": "lease + UNIQUE(request_id)" if "unique" in table else "lease only",
            "B": "ran the charge" if b.executed else "got a stored result", "A": a_got,
            "payments": payments(db, request_id, table), "stored": json.loads(r.get(key))}


def lease_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["guard", "retry B", "slow caller A", "payments", "Redis holds"],
                 [[x["guard"], x["B"], x["A"], x["payments"], f"the result of {x['stored'].get('by')}"] for x in rows],
                 title="A's charge outlives its lease; B retries in between")


def token_race(r: redis.Redis, prefix: str, clicks: int = 10) -> Table:
    """``clicks`` redeems of one token in flight: GET then DEL (all GETs first, a barrier), and
    ``GETDEL`` (released together). Returns a table; its rows hold the counts."""
    all_read = threading.Barrier(clicks, timeout=10)
    naive = OneTimeToken(r, prefix=prefix, hooks={"after_get": lambda *_: all_read.wait()})
    naive.issue("reset-1", "user 42")
    naive_got = run_threads(lambda actor, log: naive.naive_redeem("reset-1"), clicks)
    tok = OneTimeToken(r, prefix=prefix)
    tok.issue("reset-2", "user 43")
    got = run_threads(lambda actor, log: tok.redeem("reset-2"), clicks)
    return Table(["redeem", "clicks", "got the token", "token left in Redis"], [
        ["GET, then DEL", clicks, sum(v is not None for v in naive_got), r.exists(naive.key("reset-1"))],
        ["GETDEL", clicks, sum(v is not None for v in got), r.exists(tok.key("reset-2"))],
    ], title="A one-time token, redeemed by concurrent clicks")


# -- WATCH vs CAS vs Lua under contention ---------------------------------------------------------

METHODS = ("watch_incr", "cas_incr", "lua_incr")


def contention_trials(r: redis.Redis, prefix: Callable[..., str], threads: tuple[int, ...] = (1, 2, 4, 8),
                      total: int = 800) -> list[dict[str, Any]]:
    """``total`` increments of one key split over each thread count, by each method; no barriers.
    Each row: threads, method, value, commits, aborts, attempts, ops_s (measured, run-dependent)."""
    rows = []
    for n in threads:
        for method in METHODS:
            c = Counter(r, prefix=prefix("bench", n, method))
            per_thread = total // n
            t0 = time.perf_counter()
            def increments(actor, log, c=c, method=method, k=per_thread):
                return [getattr(c, method)("n") for _ in range(k)]
            run_threads(increments, n)
            elapsed = time.perf_counter() - t0
            rows.append({"threads": n, "method": method, "value": c.value("n"), "commits": c.stats.commits,
                         "aborts": c.stats.aborts, "attempts": c.stats.attempts, "ops_s": total / elapsed})
    return rows


def contention_table(rows: list[dict[str, Any]], total: int = 800) -> Table:
    return Table(["threads", "method", "value", "aborts", "aborts per increment", "increments/s"],
                 [[x["threads"], x["method"], x["value"], x["aborts"], x["aborts"] / total, x["ops_s"]] for x in rows],
                 title=f"{total} increments of one key", fmt={"aborts per increment": ".2f", "increments/s": ".0f"},
                 note="increments/s depends on this machine and its load; aborts are what WATCH and CAS pay")


def contention_chart(rows: list[dict[str, Any]], total: int = 800) -> str:
    """Throughput and aborts per increment against threads; prints and returns the summary."""
    fig, (ax1, ax2) = charts.figure("WATCH vs CAS vs Lua on one hot key", ncols=2, width=10, height=3.4,
                                    xlabel="threads on one key")
    for method in METHODS:
        mine = [x for x in rows if x["method"] == method]
        ax1.plot([x["threads"] for x in mine], [x["ops_s"] for x in mine], marker="o", label=method)
        ax2.plot([x["threads"] for x in mine], [x["aborts"] / total for x in mine], marker="o", label=method)
    ax1.set(ylabel="throughput (increments/s)", title="throughput")
    ax1.set_ylim(bottom=0)
    ax2.set(ylabel="aborts per increment", title="retries")
    lo, hi = min(x["threads"] for x in rows), max(x["threads"] for x in rows)
    at = {(x["method"], x["threads"]): x for x in rows}
    parts = [f"{m} {at[m, lo]['ops_s']:,.0f} → {at[m, hi]['ops_s']:,.0f}/s "
             f"({at[m, hi]['aborts'] / total:.2f} aborts per increment)"
             for m in METHODS]
    summary = f"in this run, from {lo} to {hi} threads: " + "; ".join(parts)
    charts.finish([ax2], summary=summary)  # one legend, beside the right-hand plot
    return summary


# -- Try it: round trips of a WATCH update ---------------------------------------------------------


def interfered_update(r: redis.Redis, other: redis.Redis, key: str, interferences: int):
    """One ``watch_update`` of ``key`` on ``r`` while ``other`` writes the key in its gap
    (between the read and EXEC) ``interferences`` times in a row. Returns the trace of ``r``'s
    commands (``other``'s are not recorded) and the final value."""
    from ..trace import trace

    r.set(key, 1)
    writes = [0]

    def compute(raw: Any) -> int:
        if writes[0] < interferences:
            writes[0] += 1
            other.incr(key)  # another client, right in the gap
        return int(raw) * 10

    with trace(r) as t:
        watch_update(r, key, compute)
    return t, r.get(key)


# -- Going deeper: a long script stops the server -------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """What another client saw while a long script held the server (see :class:`LongScript`).

    Attributes:
        first_error: the first error reply a probe got (``BUSY Redis is busy running a script...``).
        first_wait_s: how long that first probe waited before the error came back (a command
            sent while the script runs queues until ``busy-reply-threshold``, then gets BUSY).
        busy_replies: how many probes got an error reply before the server answered again.
        unavailable_s: from the moment the script was sent until a probe got a normal reply.
    """

    first_error: str
    first_wait_s: float
    busy_replies: int
    unavailable_s: float


class LongScript:
    """A Lua script that runs too long, and what it does to every other client.

    Redis runs one script at a time and nothing else meanwhile; that is what makes a script
    atomic, and it is also why a slow one stops the whole server::

        time 0      client A: EVAL <loop>            the server runs only A's script now
        time 0-T    client B: GET x                  no reply: B's command waits
        time T      (T = busy-reply-threshold, 5 s by default)
                    client B: <- BUSY Redis is busy running a script
        later       client C: SCRIPT KILL            the script stops with an error; server is back

    Meanwhile every other command gets ``BUSY``: essentially only ``SCRIPT KILL``,
    ``FUNCTION KILL``, ``SHUTDOWN NOSAVE`` and a few connection commands (``AUTH``, ``HELLO``,
    ``RESET``, ``QUIT``, and ``MULTI``/``WATCH`` bookkeeping: the commands flagged ``allow-busy``)
    are served.

    ``SCRIPT KILL`` works only if the script has not written anything yet: stopping it halfway
    through its writes would break atomicity, so Redis answers ``UNKILLABLE`` and the only way
    out is ``SHUTDOWN NOSAVE`` (the process exits; what the script wrote is never saved).

    Both scripts below loop until a key appears. No other client can write that key while the
    script runs (every write gets BUSY), so they spin until killed, or until the safety bound
    ``max_ms`` on the server's clock ends them.

    Args:
        r: the client the script is sent on (use a separate one from the probes: it is blocked).
        prefix: keys are ``<prefix>:<name>``.
    """

    # KEYS[1] = a key to wait for; ARGV[1] = safety bound in ms of server time
    # Returns the number of loop turns. Read-only: SCRIPT KILL can stop it.
    LUA_SPIN = """
    local t0 = redis.call('TIME')
    local bound, n = tonumber(ARGV[1]), 0
    while redis.call('EXISTS', KEYS[1]) == 0 do
      n = n + 1
      if n % 10000 == 0 then
        local t = redis.call('TIME')
        if (t[1] - t0[1]) * 1000 + (t[2] - t0[2]) / 1000 > bound then return n end
      end
    end
    return n
    """

    # KEYS[1] = a key to wait for, KEYS[2] = a key written first; ARGV[1] = safety bound in ms
    # The same loop after one SET: the script has written, so SCRIPT KILL answers UNKILLABLE.
    LUA_WRITE_THEN_SPIN = "\n    redis.call('SET', KEYS[2], 'half-done')" + LUA_SPIN

    def __init__(self, r: redis.Redis, *, prefix: str = "busy") -> None:
        self.r = r
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def start(self, *, writes: bool = False, max_ms: int = 20_000):
        """Send the script from a new thread; returns ``(Future, send_time)`` (perf_counter)."""
        if writes:
            args = (self.LUA_WRITE_THEN_SPIN, 2, self.key("go"), self.key("written"), max_ms)
        else:
            args = (self.LUA_SPIN, 1, self.key("go"), max_ms)
        sent = time.perf_counter()
        return run_in_thread(self.r.eval, *args, thread_name="long-script"), sent

    @staticmethod
    def wait_busy(probe: redis.Redis, *, timeout: float = 10.0) -> tuple[str, float]:
        """PING until a reply is an error (BUSY); return it and how long that PING waited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                probe.ping()
            except redis.ResponseError as exc:
                return str(exc), time.perf_counter() - t
        raise TimeoutError(f"no BUSY reply within {timeout} s: is the script running?")

    @staticmethod
    def wait_available(probe: redis.Redis, *, timeout: float = 10.0) -> int:
        """PING until it answers PONG; return how many error replies came first."""
        deadline, errors = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            try:
                probe.ping()
                return errors
            except redis.ResponseError:
                errors += 1
        raise TimeoutError(f"the server did not answer within {timeout} s")

    def outage(self, probe: redis.Redis, *, stop: Callable[[], Any], timeout: float = 10.0) -> Outage:
        """Run the read-only script, wait for BUSY, call ``stop()`` (e.g. SCRIPT KILL), and
        measure how long ``probe`` could not get an answer."""
        fut, sent = self.start()
        first, waited = self.wait_busy(probe, timeout=timeout)
        stop()
        errors = self.wait_available(probe, timeout=timeout)
        back = time.perf_counter()
        try:
            fut.result(timeout=timeout)
        except redis.ResponseError:
            pass  # "Script killed by user with SCRIPT KILL": what a killed script's caller gets
        return Outage(first, waited, errors + 1, back - sent)


def busy_demo(long: LongScript, probe: redis.Redis) -> dict[str, Any]:
    """Client A sends the spinning script; the probe PINGs until BUSY, tries to write the key the
    script waits for, sends HELLO (a connection command), then SCRIPT KILL, and PINGs until PONG.
    No sleeps: each step waits for a reply."""
    fut, sent = long.start()
    busy_error, first_wait = long.wait_busy(probe)
    try:
        probe.set(long.key("go"), 1)
        write_error = "OK"
    except redis.ResponseError as exc:
        write_error = str(exc)
    try:
        probe.execute_command("HELLO")  # a connection command: flagged allow-busy
        hello = "served"
    except redis.ResponseError as exc:
        hello = str(exc)
    killed = probe.script_kill()
    long.wait_available(probe)
    back = time.perf_counter()
    try:
        fut.result(timeout=10)
        script_error = "returned normally"
    except redis.ResponseError as exc:
        script_error = str(exc).split(" script:")[0]
    return {"PING": busy_error, "SET": write_error, "HELLO": hello, "SCRIPT KILL": killed, "client A": script_error,
            "first_wait_ms": first_wait * 1000, "unavailable_ms": (back - sent) * 1000}


def unkillable_demo(busy: Any, long: LongScript, probe: redis.Redis) -> dict[str, Any]:
    """A key is written, then a script that writes and spins; SCRIPT KILL is refused, SHUTDOWN
    NOSAVE ends the process; the server restarts from its AOF. What survived?"""
    probe.set(long.key("before"), "written before the script")
    fut, sent = long.start(writes=True)
    long.wait_busy(probe)
    try:
        probe.script_kill()
        unkillable = "killed"
    except redis.ResponseError as exc:
        unkillable = str(exc)
    probe.shutdown(nosave=True)
    try:
        fut.result(timeout=10)
        script_end = "returned"
    except redis.ConnectionError as exc:
        script_end = type(exc).__name__
    exit_code = busy.proc.wait(timeout=10)
    down_ms = (time.perf_counter() - sent) * 1000
    busy.restart()
    after = busy.client()
    kept = {k: after.get(long.key(k)) for k in ("before", "written")}
    after.close()
    return {"SCRIPT KILL": unkillable, "client A": script_end, "exit code": exit_code,
            "after restart": kept, "down_ms": down_ms}
