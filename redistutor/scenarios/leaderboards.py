"""Scenarios for notebooks/23-leaderboards.ipynb: the races, boards, trials and charts.

Each helper is one line in the notebook and returns plain data; the pattern itself is in
:mod:`redistutor.patterns.leaderboards`.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import redis

from .. import charts
from ..events import EventLog
from ..race import PausePoint, run_in_thread
from ..tables import Table
from ..timeline import run_threads

PAGE_MULTIPLIER = 10**10  # the score multiplier of the composite-score recipe being tested


def python_order(scores: dict[str, float]) -> list[tuple[str, float]]:
    """The exact leaderboard order computed in Python: highest score first, and on equal scores
    the member that sorts last by bytes first (what ZRANGE ... REV does)."""
    return [(m, float(s)) for m, s in sorted(scores.items(), key=lambda ms: (ms[1], ms[0].encode()), reverse=True)]


# -- the naive way and the race -------------------------------------------------------------------


def naive_race(server: Any, key: str, clients: int = 50) -> int:
    """``clients`` threads each add 1 point to alice by HGET, then HSET (read-modify-write in the
    application). A barrier holds every write until all have read. Returns alice's final score."""
    r = server.client()
    r.delete(key)
    r.hset(key, "alice", 0)
    all_read = threading.Barrier(clients, timeout=30)

    def client(actor, log):
        score = int(r.hget(key, "alice"))
        all_read.wait()
        r.hset(key, "alice", score + 1)

    run_threads(client, clients, name="client")
    return int(r.hget(key, "alice"))


def naive_pair(server: Any, key: str, start: int = 10) -> tuple[EventLog, int]:
    """Two clients each add 1 point to alice by HGET, then HSET. Client A stops at a pause point
    between its read and its write; client B reads, writes and finishes; then A writes. Returns the
    event log (read -> write spans, for a Timeline) and alice's final score."""
    r = server.client()
    r.delete(key)
    r.hset(key, "alice", start)
    log = EventLog()

    def add_one(actor, between=None):
        score = int(r.hget(key, "alice"))
        log.record(actor, "read", f"HGET -> {score}")
        if between:
            between()
        r.hset(key, "alice", score + 1)
        log.record(actor, "write", f"HSET {score + 1}")

    pause = PausePoint("between HGET and HSET")
    a = run_in_thread(add_one, "client-A", pause)
    pause.wait_reached()
    add_one("client-B")
    pause.release()
    a.result(timeout=10)
    return log, int(r.hget(key, "alice"))


def naive_top(r: redis.Redis, key: str, n: int = 10) -> list[tuple[str, float]]:
    """Top n from a hash of scores: every score travels to the application, which sorts them."""
    return python_order({m: float(s) for m, s in r.hgetall(key).items()})[:n]


def zincrby_race(server: Any, key: str, clients: int = 50, each: int = 200) -> float:
    """``clients`` threads released together, each sending ``each`` ZINCRBY 1 for alice, one
    command per round trip. Returns alice's final score."""
    r = server.client()
    r.delete(key)

    def client(actor, log):
        for _ in range(each):
            r.zincrby(key, 1, "alice")

    run_threads(client, clients, name="client")
    return r.zscore(key, "alice")


# -- boards --------------------------------------------------------------------------------------


def random_scores(n: int, seed: int = 23, high: int = 500) -> dict[str, int]:
    """n players with integer scores in 0..high: with n > high, many ties."""
    rnd = random.Random(seed)
    return {f"player:{i:05d}": rnd.randint(0, high) for i in range(n)}


def load(r: redis.Redis, key: str, scores: dict[str, float], chunk: int = 5000) -> None:
    """ZADD the scores in pipelined chunks (one round trip per chunk)."""
    r.delete(key)
    items = list(scores.items())
    with r.pipeline(transaction=False) as p:
        for i in range(0, len(items), chunk):
            p.zadd(key, dict(items[i:i + chunk]))
        p.execute()


def ranks(r: redis.Redis, key: str, members: list[str]) -> list[int | None]:
    """ZREVRANK of every member, pipelined."""
    with r.pipeline(transaction=False) as p:
        for m in members:
            p.zrevrank(key, m)
        return p.execute()


def window_table(rows: list[tuple[str, float]], me: str, first_rank: int, title: str) -> Table:
    """A leaderboard window as a table, "me" marked."""
    return Table(["rank", "player", "score", ""],
                 [[first_rank + i, m, s, "◀ me" if m == me else ""] for i, (m, s) in enumerate(rows)],
                 title=title, fmt={"score": ".0f"})


# -- ties and the 2**53 limit ---------------------------------------------------------------------


def page_composite(score: int, ts: int) -> int:
    """The composite score as usually written: score * 1e10 + (MAX_TS - ts), with MAX_TS the last
    second below 1e10, and no range check."""
    return score * PAGE_MULTIPLIER + (PAGE_MULTIPLIER - 1 - ts)


def tie_pair(r: redis.Redis, key: str, raw: int, ts: int = 1_700_000_002) -> dict[str, Any]:
    """Two players reach the same raw score one second apart; "early" should rank first. The
    early player's name sorts first, so a lost tie-break (equal doubles) puts "late" on top."""
    r.delete(key)
    exact = {"player:early": page_composite(raw, ts), "player:late": page_composite(raw, ts + 1)}
    r.zadd(key, exact)
    stored = dict(r.zrange(key, 0, -1, withscores=True))
    return {"exact": exact, "stored": stored, "order": r.zrange(key, 0, -1, desc=True),
            "equal": stored["player:early"] == stored["player:late"]}


def tie_break_trial(r: redis.Redis, key: str, raws: list[int], pairs: int = 200,
                    seed: int = 7) -> dict[int, float]:
    """For each raw score, ``pairs`` pairs of players reaching it one second apart (random
    timestamps), added with the page's composite; returns the share of pairs (%) where the server
    still ranks the earlier player first."""
    rnd = random.Random(seed)
    out = {}
    for raw in raws:
        r.delete(key)
        mapping = {}
        for j in range(pairs):
            ts = rnd.randrange(1_600_000_000, 1_800_000_000)
            mapping[f"a:{j:04d}"] = page_composite(raw + j, ts)      # earlier; sorts first by name
            mapping[f"b:{j:04d}"] = page_composite(raw + j, ts + 1)  # one second later
        r.zadd(key, mapping)
        got = ranks(r, key, [m for j in range(pairs) for m in (f"a:{j:04d}", f"b:{j:04d}")])
        out[raw] = 100 * sum(got[2 * j] < got[2 * j + 1] for j in range(pairs)) / pairs
    r.delete(key)
    return out


def plot_tie_break(trial: dict[int, float]) -> None:
    raws = sorted(trial)
    limit = 2**53 / PAGE_MULTIPLIER
    fig, ax = charts.figure("Tie-breaks kept by score * 1e10 + (MAX_TS - ts)",
                            xlabel="raw score (log scale)", ylabel="pairs still in time order (%)")
    ax.plot(raws, [trial[x] for x in raws], marker="o", label="measured on this server")
    ax.axvline(limit, color=charts.BAD, linestyle="--", label="2**53 / 1e10 ≈ 900,720")
    ax.set_xscale("log")
    ax.set_ylim(-5, 105)
    safe = [x for x in raws if x < limit]
    over = [x for x in raws if x >= limit]
    charts.finish(ax, summary=(
        f"in this run every pair below {limit:,.0f} kept its order (lowest: "
        f"{min(trial[x] for x in safe):.0f} %), and above it between {min(trial[x] for x in over):.0f} % "
        f"and {max(trial[x] for x in over):.0f} % did"))


# -- time windows ---------------------------------------------------------------------------------


def daily_boards(r: redis.Redis, prefix: str, days: int = 7, players: int = 30, games: int = 300,
                 seed: int = 3, ttl_s: int = 8 * 86400):
    """One sorted set of points per day (``prefix:day:N``, ZINCRBY per game) and one of each
    player's best single game that day (``prefix:best:N``, ZADD GT), both with a TTL. Returns the
    two lists of keys and the exact per-day totals and bests computed in Python."""
    rnd = random.Random(seed)
    day_keys, best_keys, totals, bests = [], [], [], []
    for d in range(days):
        key, bkey = f"{prefix}:day:{d}", f"{prefix}:best:{d}"
        r.delete(key, bkey)
        total: dict[str, float] = {}
        best: dict[str, float] = {}
        with r.pipeline(transaction=False) as p:
            for _ in range(games):
                who, pts = f"p{rnd.randrange(players):02d}", rnd.randint(1, 100)
                total[who] = total.get(who, 0) + pts
                best[who] = max(best.get(who, 0), pts)
                p.zincrby(key, pts, who)
                p.zadd(bkey, {who: pts}, gt=True)
            p.expire(key, ttl_s)
            p.expire(bkey, ttl_s)
            p.execute()
        day_keys.append(key)
        best_keys.append(bkey)
        totals.append(total)
        bests.append(best)
    return day_keys, best_keys, totals, bests


# -- rank latency vs N ----------------------------------------------------------------------------


def _per_call_us(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _cmdstat(r: redis.Redis, name: str) -> tuple[int, int]:
    """(calls, usec) the server has counted for one command (INFO commandstats)."""
    stat = r.info("commandstats").get(f"cmdstat_{name}", {})
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


def _server_us(r: redis.Redis, name: str, fn, calls: int) -> tuple[float, float]:
    """Run fn() ``calls`` times: (µs per call seen by the client, µs per call the server spent
    executing the command, from the commandstats delta)."""
    c0, u0 = _cmdstat(r, name)
    client_us = _per_call_us(fn, calls)
    c1, u1 = _cmdstat(r, name)
    return client_us, (u1 - u0) / max(1, c1 - c0)


def latency_trial(r: redis.Redis, key: str, sizes: list[int], calls: int = 300,
                  naive_budget: int = 20_000, seed: int = 11) -> dict[int, dict[str, Any]]:
    """For each board size N: the encoding, the time per ZREVRANK and per ZINCRBY (seen by the
    client: mostly the round trip; and spent by the server, from INFO commandstats), the naive
    rank (HGETALL + sort in Python, on a hash of the same scores; repeated while it costs less than
    ``naive_budget`` entries), and a correctness sample: 200 random players' ZREVRANK against
    Python's sort."""
    rnd = random.Random(seed)
    hkey = key + ":hash"
    out = {}
    for n in sizes:
        scores = {f"p{i:07d}": rnd.random() * 1e6 for i in range(n)}
        load(r, key, scores)
        r.delete(hkey)
        items = list(scores.items())
        with r.pipeline(transaction=False) as p:
            for i in range(0, n, 5000):
                p.hset(hkey, mapping=dict(items[i:i + 5000]))
            p.execute()
        members = list(scores)
        sample = rnd.sample(members, min(200, n))
        position = {m: i for i, (m, _) in enumerate(python_order(scores))}
        ok = ranks(r, key, sample) == [position[m] for m in sample]
        naive_calls = max(1, min(5, naive_budget // n))
        pick = iter(rnd.choices(members, k=2 * calls + naive_calls))
        rank_us, rank_srv = _server_us(r, "zrevrank", lambda pick=pick: r.zrevrank(key, next(pick)), calls)
        incr_us, incr_srv = _server_us(r, "zincrby", lambda pick=pick: r.zincrby(key, 0, next(pick)), calls)

        def naive_rank(pick=pick):
            me = next(pick)
            board = python_order({m: float(s) for m, s in r.hgetall(hkey).items()})
            return [m for m, _ in board].index(me)

        out[n] = {"encoding": r.object("encoding", key), "zcard": r.zcard(key), "correct": ok,
                  "zrevrank_us": rank_us, "zrevrank_server_us": rank_srv,
                  "zincrby_us": incr_us, "zincrby_server_us": incr_srv,
                  "naive_us": _per_call_us(naive_rank, naive_calls)}
    r.delete(key, hkey)
    return out


def latency_table(trial: dict[int, dict[str, Any]]) -> Table:
    cols = ["players", "encoding", "ranks = Python's sort", "ZREVRANK round trip (µs)",
            "ZREVRANK in server (µs)", "ZINCRBY in server (µs)", "HGETALL + sort (µs)"]
    return Table(cols,
                 [[n, t["encoding"], "yes" if t["correct"] else "NO", t["zrevrank_us"],
                   t["zrevrank_server_us"], t["zincrby_server_us"], t["naive_us"]] for n, t in trial.items()],
                 title="One rank lookup and one update, per board size",
                 fmt={c: ",.1f" if "server" in c else ",.0f" for c in cols[3:]})


def plot_latency(trial: dict[int, dict[str, Any]]) -> None:
    sizes = sorted(trial)
    fig, ax = charts.figure("Rank lookup time vs board size", xlabel="players (log scale)",
                            ylabel="time per call (µs, log scale)")
    for field, label in (("zrevrank_server_us", "ZREVRANK, in the server"),
                         ("zincrby_server_us", "ZINCRBY, in the server"),
                         ("zrevrank_us", "ZREVRANK, round trip"),
                         ("naive_us", "HGETALL + sort in Python")):
        ax.plot(sizes, [trial[n][field] for n in sizes], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = sizes[0], sizes[-1]
    t0, t1 = trial[lo], trial[hi]
    charts.finish(ax, summary=(
        f"in this run, from {lo:,} to {hi:,} players ({hi // lo:,}x), ZREVRANK took "
        f"{t0['zrevrank_server_us']:.1f} -> {t1['zrevrank_server_us']:.1f} µs in the server "
        f"({t0['zrevrank_us']:,.0f} -> {t1['zrevrank_us']:,.0f} µs with the round trip), and the naive "
        f"rank {t0['naive_us']:,.0f} -> {t1['naive_us']:,.0f} µs ({t1['naive_us'] / t0['naive_us']:,.0f}x)"))


def paging_trial(r: redis.Redis, key: str, n: int = 30_000, page: int = 10, calls: int = 100,
                 seed: int = 13) -> list[list[Any]]:
    """Server time (INFO commandstats) of the first and the last page of a board of n players, by
    rank (ZREVRANGE start stop) and by score with an offset (ZRANGE ... BYSCORE REV LIMIT offset).
    Returns table rows and leaves the board in place for the caller to check."""
    rnd = random.Random(seed)
    load(r, key, {f"p{i:06d}": rnd.random() * 1e6 for i in range(n)})
    rows = []
    for offset in (0, n - page):
        # redis-py sends zrange(..., desc=True) by rank as ZREVRANGE, the older name of ZRANGE ... REV
        _, by_rank = _server_us(r, "zrevrange",
                                lambda offset=offset: r.zrange(key, offset, offset + page - 1, desc=True), calls)
        _, by_score = _server_us(r, "zrange",
                                 lambda offset=offset: r.zrange(key, "+inf", "-inf", desc=True, byscore=True,
                                                                   offset=offset, num=page), calls)
        rows.append([offset, by_rank, by_score])
    return rows


def paging_table(rows: list[list[Any]]) -> Table:
    (_, r0, s0), (_, r1, s1) = rows[0], rows[-1]
    note = (f"in this run the last page took {r1:.1f} µs by rank (first: {r0:.1f}) and {s1:.1f} µs by "
            f"score with an offset (first: {s0:.1f})")
    return Table(["offset", "by rank (µs in server)", "by score + LIMIT offset (µs in server)"], rows,
                 title="One page of 10, first vs last", note=note, fmt={"by rank (µs in server)": ".1f",
                                                              "by score + LIMIT offset (µs in server)": ".1f"})


def plot_scores(scores: dict[str, float], me: str) -> None:
    """Histogram of the board's scores, with "me" marked, and its percentile in the summary."""
    values = list(scores.values())
    fig, ax = charts.figure("Score distribution", xlabel="score (points)", ylabel="players")
    ax.hist(values, bins=25, label=f"{len(values):,} players")
    ax.axvline(scores[me], color=charts.BAD, linestyle="--", label=f"{me}")
    above = sum(v > scores[me] for v in values)
    charts.finish(ax, summary=(f"in this run {me} scored {scores[me]:.0f}; {above} players scored more, "
                               f"so {me} is in the top {100 * (above + 1) / len(values):.1f} %"))
