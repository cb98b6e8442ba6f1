"""The experiments of notebooks/21-bitmap-patterns.ipynb, each behind a one-line helper.

The pattern (:class:`~redistutor.patterns.bitmap_patterns.DailyActive`,
:class:`~redistutor.patterns.bitmap_patterns.PackedCounters`) lives in the pattern module; this
module loads test data, measures sizes next to Python's exact answers, stages the lost-flag race
with a pause point, and draws the charts. Every helper returns plain data or a
:class:`~redistutor.Table`.

Bitmaps hold raw bytes, which a ``decode_responses=True`` client cannot read back, so helpers that
need the bytes open a binary client of their own (``server.client(decode_responses=False)``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ..race import PausePoint, run_in_thread
from ..tables import Table

UNIVERSE = 1_000_000  # user ids 0..999,999


def raw(server: Any):
    """A client that returns bytes (a bitmap is not UTF-8 text)."""
    return server.client(decode_responses=False)


def bits_of(data: bytes, *, msb_first: bool = True) -> list[int]:
    """The bits of ``data`` in offset order: SETBIT offset 0 is the most significant bit of byte 0."""
    order = range(7, -1, -1) if msb_first else range(8)
    return [(byte >> i) & 1 for byte in data for i in order]


def random_ids(n: int, universe: int = UNIVERSE, seed: int = 21) -> list[int]:
    """``n`` distinct ids below ``universe``, the same on every run."""
    return random.Random(seed * 1_000_003 + n).sample(range(universe), n)


def load_bitmap(r: Any, key: str, ids, chunk: int = 20_000) -> None:
    """SETBIT every id, pipelined (no MULTI): one round trip per ``chunk`` ids."""
    ids = list(ids)
    for i in range(0, len(ids), chunk):
        p = r.pipeline(transaction=False)
        for x in ids[i:i + chunk]:
            p.setbit(key, x, 1)
        p.execute()


def bitmap_bytes(ids, bits: int = 0) -> bytes:
    """The bytes SETBIT would leave for these ids (bit ``i`` = byte ``i // 8``, mask ``0x80 >> i % 8``),
    at least ``bits`` long."""
    ids = list(ids)
    data = bytearray((max(max(ids) + 1 if ids else 0, bits) + 7) // 8)
    for i in ids:
        data[i >> 3] |= 0x80 >> (i & 7)
    return bytes(data)


def store_bitmap(r: Any, key: str, ids, bits: int = 0) -> None:
    """Bulk load: build the bitmap in Python and write it with one SET (a batch job's way)."""
    r.set(key, bitmap_bytes(ids, bits))


def load_set(r: Any, key: str, ids, chunk: int = 10_000) -> None:
    ids = list(ids)
    for i in range(0, len(ids), chunk):
        r.sadd(key, *ids[i:i + chunk])


# -- one bit per user ---------------------------------------------------------------------------

def one_million(r: Any, key: str) -> dict[str, int]:
    """One SETBIT at the last of a million ids: how long is the string, and what does it cost?"""
    r.delete(key)
    r.setbit(key, UNIVERSE - 1, 1)
    return {"STRLEN (bytes)": r.strlen(key), "MEMORY USAGE (bytes)": r.memory_usage(key),
            "BITCOUNT": r.bitcount(key), "bits": r.strlen(key) * 8}


def growth_trial(r: Any, key: str, n: int = 2_000, universe: int = UNIVERSE) -> dict[str, tuple[int, int]]:
    """The same ``n`` random ids set one SETBIT at a time, arriving in random order, on an empty key
    and on a key pre-sized by ``SETBIT key universe-1 0``: (STRLEN, MEMORY USAGE) of each."""
    ids = random_ids(n, universe)
    out = {}
    for name, presize in (("grown bit by bit", False), ("pre-sized", True)):
        r.delete(key)
        if presize:
            r.setbit(key, universe - 1, 0)
        load_bitmap(r, key, ids)
        out[name] = (r.strlen(key), r.memory_usage(key, samples=0))
    r.delete(key)
    return out


def growth_table(growth: dict[str, tuple[int, int]]) -> Table:
    return Table(["bitmap", "STRLEN (bytes)", "MEMORY USAGE (bytes)"], [[k, a, b] for k, (a, b) in growth.items()],
                 title="2,000 random ids below 1,000,000, one SETBIT each")


def size_table(sizes: dict[str, int]) -> Table:
    return Table(["measure", "value"], [[k, v] for k, v in sizes.items()],
                 title="SETBIT at id 999,999 on an empty key")


def set_vs_bitmap(r: Any, prefix: str, active: int, universe: int = UNIVERSE) -> dict[str, Any]:
    """The same ``active`` random ids as a bitmap and as a set; sizes from MEMORY USAGE."""
    ids = random_ids(active, universe)
    bkey, skey = f"{prefix}:bitmap", f"{prefix}:set"
    r.delete(bkey, skey)
    store_bitmap(r, bkey, ids, universe)
    load_set(r, skey, ids)
    out = {"active": active, "universe": universe, "bitmap": r.memory_usage(bkey, samples=0),
           "set": r.memory_usage(skey, samples=0), "encoding": r.object("encoding", skey),
           "bitcount": r.bitcount(bkey), "scard": r.scard(skey)}
    r.delete(bkey, skey)
    return out


def compare_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["active ids", "density", "bitmap (bytes)", "set (bytes)", "set encoding", "set / bitmap"],
                 [[x["active"], f"{x['active'] / x['universe']:.2%}", x["bitmap"], x["set"], x["encoding"],
                   round(x["set"] / x["bitmap"], 2)] for x in rows],
                 title="The same ids as a bitmap and as a set (MEMORY USAGE)")


# -- the lost flag --------------------------------------------------------------------------------

FLAGS = {0: "dark mode", 1: "notifications", 2: "beta"}


def naive_set_flag(r: Any, key: str, bit: int, between: Callable[[], None] | None = None) -> None:
    """Read the whole flags string, set one bit in Python, write it all back (two round trips)."""
    data = bytearray(r.get(key) or b"\x00")
    data[bit // 8] |= 0x80 >> (bit % 8)
    if between:
        between()
    r.set(key, bytes(data))


def lost_flag_race(server: Any, naive_key: str, setbit_key: str) -> dict[str, list[int]]:
    """A turns on notifications (bit 1) while B turns on beta (bit 2); dark mode (bit 0) is on.

    A reads, is paused, B reads-modifies-writes, then A writes its stale copy. The same two
    requests again with SETBIT. Returns the first 8 bits of each key afterwards."""
    r = raw(server)
    for key in (naive_key, setbit_key):
        r.delete(key)
        r.setbit(key, 0, 1)
    names = {naive_key: "GET + SET (naive)", setbit_key: "SETBIT"}
    pause = PausePoint("A between GET and SET")
    a = run_in_thread(naive_set_flag, r, naive_key, 1, pause, thread_name="request-A")
    pause.wait_reached()
    naive_set_flag(r, naive_key, 2)  # request B, start to finish
    pause.release()
    a.result(timeout=10)
    pause = PausePoint("A before SETBIT")

    def a_setbit():
        pause()
        r.setbit(setbit_key, 1, 1)

    a = run_in_thread(a_setbit, thread_name="request-A")
    pause.wait_reached()
    r.setbit(setbit_key, 2, 1)  # request B
    pause.release()
    a.result(timeout=10)
    return {names[k]: bits_of(r.get(k) or b"")[:8] for k in (naive_key, setbit_key)}


def flags_table(race: dict[str, list[int]]) -> Table:
    return Table(["written with", *FLAGS.values()],
                 [[how, *["on" if bits[i] else "off" for i in FLAGS]] for how, bits in race.items()],
                 title="Flags after A (notifications) and B (beta) ran at once; dark mode was on")


# -- days, retention, cohorts ------------------------------------------------------------------

def simulate_days(days: int = 7, users: int = 50_000, seed: int = 7) -> list[set[int]]:
    """Who was active on each day: 30 % of users on day 0; an active user stays with p 0.6, an
    inactive one comes (back) with p 0.15."""
    rng = random.Random(seed)
    active = {u for u in range(users) if rng.random() < 0.3}
    out = [set(active)]
    for _ in range(days - 1):
        active = {u for u in range(users) if rng.random() < (0.6 if u in active else 0.15)}
        out.append(set(active))
    return out


def load_days(da: Any, truth: list[set[int]]) -> None:
    for day, users in enumerate(truth):
        store_bitmap(da.r, da.key(day), users)


def queries(da: Any, truth: list[set[int]]) -> list[tuple[str, int, int]]:
    """(question, Redis's answer, Python's exact answer) for the notebook's set algebra."""
    week = range(len(truth))
    any_day = set().union(*truth)
    every_day = set.intersection(*truth)
    return [
        ("active on day 0 (BITCOUNT)", da.count(0), len(truth[0])),
        ("active on any day (OR)", da.count(*week), len(any_day)),
        ("active every day (AND)", da.count(*week, op="AND"), len(every_day)),
        ("day 0 and day 6: retained (AND)", da.count(0, 6, op="AND"), len(truth[0] & truth[6])),
        ("day 0 xor day 1: changed (XOR)", da.count(0, 1, op="XOR"), len(truth[0] ^ truth[1])),
    ]


def query_table(rows: list[tuple[str, int, int]]) -> Table:
    return Table(["question", "Redis", "Python sets", "equal"], [[q, a, b, a == b] for q, a, b in rows],
                 title="Bitmaps vs Python's exact set algebra")


def cohort_retention(da: Any, truth: list[set[int]]) -> list[tuple[int, float, float]]:
    """Of day 0's users, the share active on day d: (d, from Redis, from Python)."""
    base = da.count(0)
    return [(d, da.count(0, d, op="AND") / base, len(truth[0] & truth[d]) / len(truth[0]))
            for d in range(len(truth))]


def plot_activity(truth: list[set[int]], retention: list[tuple[int, float, float]], users: int = 60) -> None:
    """A users x days grid (first ``users`` ids) and day 0's cohort retention curve."""
    from .. import charts

    fig, (ax1, ax2) = charts.figure("Who was active, and who came back", ncols=2, width=10, height=3.4)
    grid = [[1 if u in day else 0 for u in range(users)] for day in truth]
    ax1.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest")
    ax1.set(title=f"user ids 0-{users - 1} by day", xlabel="user id (bit offset)", ylabel="day")
    ax2.plot([d for d, _, _ in retention], [x * 100 for _, x, _ in retention], "o-", label="BITOP AND / BITCOUNT")
    ax2.plot([d for d, _, _ in retention], [y * 100 for _, _, y in retention], "x", label="Python sets")
    ax2.set(title="day 0 cohort still active", xlabel="day", ylabel="share of day 0 users (%)")
    charts.finish([ax1, ax2], summary=f"in this run {retention[-1][1]:.1%} of day 0's users were active on "
                  f"day {retention[-1][0]} (Python: {retention[-1][2]:.1%})")


# -- BITPOS and BITCOUNT ranges --------------------------------------------------------------

def bitpos_facts(server: Any, key: str) -> list[tuple[str, Any]]:
    r = raw(server)
    r.delete(key)
    r.set(key, b"\xff\xff")  # ids 0..15 all taken
    facts = [("BITPOS full 0 (no range)", r.bitpos(key, 0)),
             ("BITPOS full 0 0 -1 (range)", r.bitpos(key, 0, 0, -1)),
             ("BITPOS missing-key 1", r.bitpos(key + ":missing", 1)),
             ("BITPOS missing-key 0", r.bitpos(key + ":missing", 0))]
    r.set(key, b"\x00\x00\x01\x80")  # ids 23 and 24 set
    facts += [("BITPOS sparse 1", r.bitpos(key, 1)),
              ("BITCOUNT sparse 0 2 (BYTE: ids 0-23)", r.bitcount(key, 0, 2)),
              ("BITCOUNT sparse 0 2 BIT (ids 0-2)", r.bitcount(key, 0, 2, "BIT"))]
    r.delete(key)
    return facts


def facts_table(facts: list[tuple[str, Any]], title: str) -> Table:
    return Table(["command", "reply"], [[c, v] for c, v in facts], title=title)


# -- BITFIELD overflow ---------------------------------------------------------------------

def overflow_trial(r: Any, key: str, start: int = 250, by: int = 10) -> list[tuple[str, Any, Any]]:
    """A u8 counter at ``start``, then INCRBY ``by`` under each OVERFLOW rule: (rule, reply, stored)."""
    from ..patterns.bitmap_patterns import PackedCounters

    out = []
    for rule in ("SAT", "WRAP", "FAIL"):
        c = PackedCounters(r, f"{key}:{rule}", bits=8, overflow=rule)
        r.delete(c.key)
        c.incr(0, start)
        out.append((rule, c.incr(0, by), c.get(0)))
    return out


def overflow_table(rows: list[tuple[str, Any, Any]], start: int = 250, by: int = 10) -> Table:
    return Table(["OVERFLOW", "INCRBY reply", "stored afterwards"], [list(x) for x in rows],
                 title=f"u8 counter at {start}, INCRBY {by}")


def concurrent_incr(server: Any, key: str, *, threads: int = 8, each: int = 200) -> int:
    """``threads`` clients x ``each`` BITFIELD INCRBY on one u16 counter, released together."""
    from ..patterns.bitmap_patterns import PackedCounters
    from ..timeline import run_threads

    r = server.client()
    r.delete(key)

    def hammer(actor, log):
        client = server.client()
        c = PackedCounters(client, key, bits=16)
        for _ in range(each):
            c.incr(5)
        client.close()

    run_threads(hammer, threads)
    return PackedCounters(r, key, bits=16).get(5)


# -- sparse ids: the offset decides the size -------------------------------------------------

def huge_offset_trial(r: Any, key: str, exponents=range(16, 28)) -> list[tuple[int, int, int, float]]:
    """One SETBIT at offset 2**e on an empty key: (offset, STRLEN, MEMORY USAGE, ms for that SETBIT)."""
    rows = []
    for e in exponents:
        r.delete(key)
        t0 = time.perf_counter()
        r.setbit(key, 2 ** e, 1)
        ms = (time.perf_counter() - t0) * 1000
        rows.append((2 ** e, r.strlen(key), r.memory_usage(key, samples=0), ms))
    r.delete(key)
    return rows


def plot_huge_offsets(rows: list[tuple[int, int, int, float]]) -> None:
    from .. import charts

    fig, (ax1, ax2) = charts.figure("One bit set at a large offset", ncols=2, width=10, height=3.4)
    xs = [o for o, _, _, _ in rows]
    ax1.loglog(xs, [m for _, _, m, _ in rows], "o-", label="MEMORY USAGE")
    ax1.loglog(xs, [s for _, s, _, _ in rows], "--", label="STRLEN")
    ax1.set(title="memory", xlabel="offset (bit)", ylabel="bytes")
    ax2.loglog(xs, [ms for _, _, _, ms in rows], "o-", label="first SETBIT")
    ax2.set(title="time of that SETBIT", xlabel="offset (bit)", ylabel="ms (client side)")
    big = rows[-1]
    charts.finish([ax1, ax2], summary=f"in this run one bit at offset {big[0]:,} cost {big[2]:,} bytes "
                  f"and its SETBIT took {big[3]:.1f} ms; at offset {rows[0][0]:,}: {rows[0][2]:,} bytes, "
                  f"{rows[0][3]:.2f} ms")


def offset_limits(server: Any, key: str) -> dict[str, str]:
    """What SETBIT answers at the edge of the offset range, at the default proto-max-bulk-len and at 1 MB.

    On a shared server (``REDIS_URL``, a namespace) the configuration is left alone: only the
    default limit is tried."""
    r = server.client()

    def attempt(offset: int) -> str:
        try:
            r.setbit(key, offset, 1)
            return "OK"
        except Exception as exc:  # redis.ResponseError
            return f"error: {exc}"
        finally:
            r.delete(key)

    default = r.config_get("proto-max-bulk-len")["proto-max-bulk-len"]
    out = {"proto-max-bulk-len (default)": default, "SETBIT 4294967296": attempt(2 ** 32)}
    if getattr(server, "namespace", None):
        return out
    r.config_set("proto-max-bulk-len", 1024 * 1024)
    try:
        out["SETBIT 8388607 (1 MB limit)"] = attempt(8 * 1024 * 1024 - 1)
        out["SETBIT 8388608 (1 MB limit)"] = attempt(8 * 1024 * 1024)
    finally:
        r.config_set("proto-max-bulk-len", default)
    return out


def density_sweep(r: Any, prefix: str, actives=(100, 300, 1_000, 2_000, 3_000, 5_000, 10_000, 30_000, 100_000),
                  universe: int = UNIVERSE) -> list[dict[str, Any]]:
    return [set_vs_bitmap(r, prefix, n, universe) for n in actives]


def crossover(rows: list[dict[str, Any]]) -> tuple[int, int] | None:
    """The two measured sizes between which the set stops being the smaller one."""
    for lo, hi in zip(rows, rows[1:]):
        if lo["set"] < lo["bitmap"] and hi["set"] >= hi["bitmap"]:
            return lo["active"], hi["active"]
    return None


def plot_density(rows: list[dict[str, Any]], intset_max: int | None = None) -> None:
    from .. import charts

    fig, ax = charts.figure("Bitmap vs set for ids below 1,000,000", xlabel="active ids (log)",
                            ylabel="MEMORY USAGE (bytes, log)")
    xs = [x["active"] for x in rows]
    ax.loglog(xs, [x["bitmap"] for x in rows], "o-", label="bitmap")
    ax.loglog(xs, [x["set"] for x in rows], "s-", label="set")
    if intset_max:
        ax.axvline(intset_max, color="grey", linestyle=":", label=f"set-max-intset-entries ({intset_max})")
    cross = crossover(rows)
    where = (f"the set stopped being smaller between {cross[0]:,} and {cross[1]:,} active ids "
             f"({cross[0] / rows[0]['universe']:.2%}-{cross[1] / rows[0]['universe']:.2%} density)"
             if cross else "no crossover in the measured range")
    charts.finish(ax, summary=f"in this run {where}; at {xs[-1]:,} ids the set was "
                  f"{rows[-1]['set'] / rows[-1]['bitmap']:.0f}x the bitmap")


# -- going deeper: BITOP's cost ---------------------------------------------------------------

def _bitop_usec(r: Any) -> int:
    return int(r.info("commandstats").get("cmdstat_bitop", {}).get("usec", 0))


def bitop_trial(r: Any, prefix: str, exponents=range(16, 26), seed: int = 3) -> list[tuple[int, int, float, int]]:
    """``BITOP AND`` of two random bitmaps of 2**e bits: (bits, result STRLEN, client ms, server usec)."""
    rng = random.Random(seed)
    a, b, dest = f"{prefix}:a", f"{prefix}:b", f"{prefix}:and"
    rows = []
    for e in exponents:
        size = 2 ** e // 8
        r.set(a, rng.randbytes(size))
        r.set(b, rng.randbytes(size))
        before = _bitop_usec(r)
        t0 = time.perf_counter()
        r.bitop("AND", dest, a, b)
        ms = (time.perf_counter() - t0) * 1000
        rows.append((2 ** e, r.strlen(dest), ms, _bitop_usec(r) - before))
    r.delete(a, b, dest)
    return rows


def plot_bitop(rows: list[tuple[int, int, float, int]]) -> None:
    from .. import charts

    fig, ax = charts.figure("BITOP AND of two bitmaps", xlabel="bitmap length (bits, log)",
                            ylabel="time (ms, log)")
    xs = [x for x, _, _, _ in rows]
    ax.loglog(xs, [ms for _, _, ms, _ in rows], "o-", label="client round trip")
    ax.loglog(xs, [max(us, 1) / 1000 for _, _, _, us in rows], "s--", label="server (commandstats)")
    big = rows[-1]
    charts.finish(ax, summary=f"in this run BITOP AND over {big[0]:,} bits took {big[3] / 1000:.2f} ms on the "
                  f"server ({big[2]:.2f} ms round trip); over {rows[0][0]:,} bits {rows[0][3] / 1000:.3f} ms")
