"""The experiments of notebooks/18-lexicographic-sorted-sets.ipynb, each behind a one-line helper.

The index classes live in :mod:`redistutor.patterns.lexicographic_sorted_sets`; this module holds
what the notebook does *with* them: a seeded vocabulary, Python's exact answers to compare with,
the naive variants (mixed scores, unpadded numbers, an index update in several round trips), the
race and the latency sweep, and the tables, chart and autocomplete box that show the results.
"""

from __future__ import annotations

import bisect
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from .. import _html as H
from ..options import text_mode
from ..patterns.lexicographic_sorted_sets import AgeIndex, LexIndex, prefix_range
from ..race import PausePoint, call_hook, run_in_thread
from ..tables import Table

# Letters weighted towards ASCII, with a few 2-, 3- and 4-byte UTF-8 characters mixed in.
ALPHABET = "abcdefghijklmnopqrstuvwxyz" * 6 + "ABCDEZ0129" + "éüßñ" + "中文" + "🚀"


# -- data and Python's exact answers ------------------------------------------------------------

def vocabulary(n: int, seed: int = 18) -> list[str]:
    """``n`` distinct random words (1-9 characters) in random order, the same in every run."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        text = "".join(rng.choices(ALPHABET, k=6 * n))
        cut = 0
        while cut < len(text) and len(words) < n:
            k = rng.randint(1, 9)
            words.setdefault(text[cut:cut + k])
            cut += k
    return list(words)


def byte_sorted(words: Sequence[str]) -> list[str]:
    """Python's exact answer: the words in UTF-8 byte order (what memcmp gives)."""
    return sorted(words, key=str.encode)


def starts_with(ordered: Sequence[str], prefix: str) -> list[str]:
    """Python's exact answer to a prefix query on the byte-sorted words.

    Words that share a prefix sit next to each other in sorted order, so this finds the first one
    with a binary search and walks while they match: the same words as filtering the whole list
    (for UTF-8, str order is byte order), in milliseconds instead of a second per 50 prefixes.
    """
    out, i = [], bisect.bisect_left(ordered, prefix)
    while i < len(ordered) and ordered[i].startswith(prefix):
        out.append(ordered[i])
        i += 1
    return out


def load(r: redis.Redis, key: str, words: Sequence[str], chunk: int = 20_000) -> int:
    """ZADD every word with score 0, in pipelined chunks; returns ZCARD."""
    r.delete(key)
    with r.pipeline(transaction=False) as p:
        for i in range(0, len(words), chunk):
            p.zadd(key, {w: 0 for w in words[i:i + chunk]})
        p.execute()
    return r.zcard(key)


def sample_prefixes(words: Sequence[str], n: int = 50, seed: int = 7) -> list[str]:
    """``n`` distinct prefixes (1-3 characters) cut from random words, some of them non-ASCII."""
    rng = random.Random(seed)
    out: list[str] = []
    pool = [w for w in words if len(w) >= 3]
    exotic = [w for w in pool if not w.isascii()]
    while len(out) < n:
        w = rng.choice(exotic if len(out) % 5 == 0 else pool)
        p = w[:rng.randint(1, 3)]
        if p not in out:
            out.append(p)
    return out


def prefix_trial(r: redis.Redis, key: str, ordered: Sequence[str], prefixes: Sequence[str]) -> list[tuple]:
    """For each prefix: (prefix, ZRANGE BYLEX reply, ZLEXCOUNT reply, Python's filter); one pipeline."""
    with r.pipeline(transaction=False) as p:
        for pre in prefixes:
            lo, hi = prefix_range(pre)
            p.zrange(key, lo, hi, bylex=True)
            p.zlexcount(key, lo, hi)
        replies = p.execute()
    return [(pre, replies[2 * i], replies[2 * i + 1], starts_with(ordered, pre))
            for i, pre in enumerate(prefixes)]


def prefix_table(trial: list[tuple], rows: int = 6) -> Table:
    shown = trial[:rows]
    ok = sum(got == exact and count == len(exact) for _, got, count, exact in trial)
    return Table(["prefix", "ZLEXCOUNT", "Python count", "same members, same order"],
                 [[p, c, len(e), "yes" if g == e else "NO"] for p, g, c, e in shown],
                 title=f"Prefix queries vs Python's filter ({len(trial)} prefixes; the first {rows} shown)",
                 note=f"{ok} of {len(trial)} prefixes: identical members, order and count")


# -- views --------------------------------------------------------------------------------------

def window_view(r: redis.Redis, key: str, lo: bytes | str, hi: bytes | str, context: int = 2,
                title: str = "") -> Table:
    """The sorted members around a lex query, the query's window marked: rank, member, its bytes."""
    everything = r.zrange(key, 0, -1)
    hits = set(r.zrange(key, lo, hi, bylex=True))
    idx = [i for i, m in enumerate(everything) if m in hits]
    first = max(0, (idx[0] if idx else 0) - context)
    last = min(len(everything), (idx[-1] + 1 if idx else 0) + context)
    rows = [[i, m, m.encode().hex(" "), "◀ in window" if m in hits else ""]
            for i, m in enumerate(everything[first:last], start=first)]
    def show(b):
        return b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else b

    return Table(["rank", "member", "UTF-8 bytes", ""], rows,
                 title=title or f"{key}: ZRANGE {show(lo)} {show(hi)} BYLEX",
                 note=f"{len(hits)} of {len(everything)} members in the window")


def bound_forms(r: redis.Redis, key: str, prefix: str) -> Table:
    """The three ways people write "starts with prefix", against Python's filter."""
    p = prefix.encode()
    nxt = p[:-1] + bytes([p[-1] + 1])
    exact = starts_with(byte_sorted(r.zrange(key, 0, -1)), prefix)
    forms = [(f"[{prefix} ({nxt.decode()}", b"[" + p, b"(" + nxt),
             (f"[{prefix} ({prefix} + byte 0xFF (bytes)", *prefix_range(prefix)),
             (f'[{prefix} ({prefix} + "\\xff" (a str)', f"[{prefix}", f"({prefix}\xff")]
    rows = []
    for label, lo, hi in forms:
        got = r.zrange(key, lo, hi, bylex=True)
        rows.append([label, len(got), ", ".join(sorted(set(exact) - set(got))) or "-"])
    return Table(["bounds", "members", "missed"], rows, title=f"Prefix {prefix!r}: {len(exact)} members start with it")


# -- the naive ways -----------------------------------------------------------------------------

def mixed_scores(r: redis.Redis, key: str, words: dict[str, float], lo: str, hi: str) -> tuple[list, list]:
    """An index whose members carry different scores (say, popularity): (ZRANGEBYLEX reply, the truth)."""
    r.delete(key)
    r.zadd(key, words)
    got = r.zrangebylex(key, lo, hi)
    lo_b, hi_b = lo[1:], hi[1:]
    exact = [w for w in byte_sorted(words)
             if (w >= lo_b if lo[0] == "[" else w > lo_b) and (w <= hi_b if hi[0] == "[" else w < hi_b)]
    return got, exact


def composite(ages: dict[str, int], width: int) -> dict[str, int]:
    """Members "age:id" with the age zero-padded to ``width`` digits (width 0: no padding)."""
    return {f"{age:0{width}d}:{uid}" if width else f"{age}:{uid}": 0 for uid, age in ages.items()}


def age_query(r: redis.Redis, key: str, ages: dict[str, int], width: int, lo: int, hi: int) -> tuple[list, list]:
    """Load ``ages`` as composite members, query lo..hi by lex range: (ids returned, ids that match)."""
    r.delete(key)
    r.zadd(key, composite(ages, width))
    fmt = (lambda a: f"{a:0{width}d}") if width else str
    got = [m.split(":", 1)[1] for m in r.zrange(key, f"[{fmt(lo)}:", f"({fmt(hi + 1)}:", bylex=True)]
    exact = [u for u, a in sorted(ages.items(), key=lambda t: (t[1], t[0])) if lo <= a <= hi]
    return got, exact


def random_ages(n: int = 40, seed: int = 3) -> dict[str, int]:
    rng = random.Random(seed)
    ages = {f"u{i}": rng.choice([rng.randint(1, 9), rng.randint(10, 99), rng.randint(100, 120)])
            for i in range(1, n + 1)}
    ages.update({"u90": 25, "u91": 30, "u92": 3, "u93": 2, "u94": 100})   # the edges, always present
    return ages


class NaiveAgeIndex(AgeIndex):
    """The same index updated the way most first versions do: read the old age, then write, in
    separate round trips. ``hooks["after_read"]`` pauses between the read and the writes."""

    def __init__(self, r: redis.Redis, prefix: str, hooks: dict[str, Callable] | None = None) -> None:
        super().__init__(r, prefix)
        self.hooks = hooks

    def set_age(self, uid: str, age: int) -> None:
        old = self.r.hget(self.user(uid), "age")
        call_hook(self.hooks, "after_read", uid, old)
        if old is not None:
            self.r.zrem(self.index, f"{int(old):03d}:{uid}")
        self.r.zadd(self.index, {f"{age:03d}:{uid}": 0})
        self.r.hset(self.user(uid), "age", age)


def naive_update_race(r: redis.Redis, prefix: str) -> dict[str, Any]:
    """Two requests change ada's age (25) at once: A to 31, B to 40. A reads 25 and pauses; B runs
    to the end; A goes on. Returns the index entries and the hash's age afterwards."""
    for k in r.scan_iter(f"{prefix}:*"):
        r.delete(k)
    AgeIndex(r, prefix).set_age("ada", 25)
    pause = PausePoint("after_read")
    a = run_in_thread(NaiveAgeIndex(r, prefix, hooks={"after_read": pause}).set_age, "ada", 31,
                      thread_name="request A")
    pause.wait_reached()
    NaiveAgeIndex(r, prefix).set_age("ada", 40)   # request B: reads 25, removes 025:ada, adds 040:ada
    pause.release()
    a.result(timeout=10)
    return {"entries": r.zrange(f"{prefix}:by_age", 0, -1), "age": r.hget(f"{prefix}:user:ada", "age")}


def update_storm(server: Any, prefix: str, make: Callable[[redis.Redis, str], AgeIndex],
                 threads: int = 8, each: int = 40, users: int = 5, seed: int = 1) -> dict[str, Any]:
    """``threads`` clients on their own connections, released together, each setting random ages of
    ``users`` users ``each`` times. Returns index entries per user and whether each matches the hash."""
    r = server.client()
    for k in r.scan_iter(f"{prefix}:*"):
        r.delete(k)
    ids = [f"p{i}" for i in range(users)]
    barrier = threading.Barrier(threads, timeout=20)

    def worker(n: int) -> None:
        c = server.client()
        idx, rng = make(c, prefix), random.Random(seed * 100 + n)
        barrier.wait()
        for _ in range(each):
            idx.set_age(rng.choice(ids), rng.randint(18, 99))
        c.close()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    entries = r.zrange(f"{prefix}:by_age", 0, -1)
    per_user = {u: [e for e in entries if e.split(":", 1)[1] == u] for u in ids}
    ages = {u: r.hget(f"{prefix}:user:{u}", "age") for u in ids}
    consistent = sum(v == [f"{int(ages[u]):03d}:{u}"] for u, v in per_user.items())
    return {"entries": len(entries), "users": users, "consistent": consistent, "per_user": per_user}


def storm_table(results: dict[str, dict]) -> Table:
    return Table(["index update", "users", "index entries", "users whose one entry matches the hash"],
                 [[name, d["users"], d["entries"], d["consistent"]] for name, d in results.items()],
                 title="8 clients × 40 age changes at once")


# -- measurement: prefix query latency vs N -----------------------------------------------------

def _p50_us(fn: Callable[[], Any], reps: int) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def zscan_prefix(r: redis.Redis, key: str, prefix: str, count: int = 1000) -> tuple[list[str], int]:
    """The O(N) alternative: ZSCAN ... MATCH prefix* over the whole set. (matches, round trips)."""
    cursor, found, trips = 0, [], 0
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    while True:
        cursor, page = r.zscan(key, cursor, match=pattern, count=count)
        trips += 1
        found += [m for m, _ in page]
        if cursor == 0:
            return byte_sorted(found), trips


def server_time(r: redis.Redis, command: str) -> tuple[int, int]:
    """(calls, µs) the server has spent on ``command`` so far (INFO commandstats)."""
    stat = r.info("commandstats").get(f"cmdstat_{command.lower()}", {})
    return stat.get("calls", 0), stat.get("usec", 0)


def latency_sweep(r: redis.Redis, key: str, words: Sequence[str], sizes: Sequence[int],
                  prefixes: Sequence[str], reps: int = 30) -> list[dict]:
    """At each size N (the largest is ``key`` itself, already loaded with ``words``; smaller ones are
    built from the first N words) time a 10-result prefix query (p50 of ``reps`` per prefix) and one
    full ZSCAN MATCH, at the client and inside the server (INFO commandstats), and check both
    answers against Python's."""
    rows = []
    for n in sizes:
        k = key if n == len(words) else f"{key}:first{n}"
        if k != key:
            load(r, k, words[:n])
        idx, ordered = LexIndex(r, k), byte_sorted(words[:n])
        matches = {p: starts_with(ordered, p) for p in prefixes}
        lex_ok = all(idx.prefix(p, 10) == matches[p][:10] for p in prefixes)
        calls0, usec0 = server_time(r, "zrange")
        lex_us = statistics.median(_p50_us(lambda p=p, idx=idx: idx.prefix(p, 10), reps) for p in prefixes)
        calls1, usec1 = server_time(r, "zrange")
        scan0 = server_time(r, "zscan")[1]
        t0 = time.perf_counter()
        found, trips = zscan_prefix(r, k, prefixes[0])
        scan_us = (time.perf_counter() - t0) * 1e6
        rows.append({"n": n, "lex_us": lex_us, "scan_us": scan_us, "scan_trips": trips,
                     "lex_server_us": (usec1 - usec0) / max(1, calls1 - calls0),
                     "scan_server_us": server_time(r, "zscan")[1] - scan0,
                     "lex_ok": lex_ok, "scan_ok": found == matches[prefixes[0]]})
        if k != key:
            r.delete(k)
    return rows


def sweep_table(rows: list[dict]) -> Table:
    cols = ["members", "prefix query: client p50 (µs)", "prefix query: server (µs)",
            "full ZSCAN: client (µs)", "full ZSCAN: server (µs)", "ZSCAN round trips"]
    return Table(cols, [[d["n"], d["lex_us"], d["lex_server_us"], d["scan_us"], d["scan_server_us"],
                         d["scan_trips"]] for d in rows],
                 fmt={c: ".1f" if "prefix query: server" in c else ".0f" for c in cols[1:5]},
                 title="One prefix query vs a full ZSCAN, as the index grows",
                 note="client: measured around the call (network and Python included); "
                      "server: INFO commandstats (time inside Redis)")


def plot_sweep(rows: list[dict]) -> None:
    from .. import charts

    n = [d["n"] for d in rows]
    fig, ax = charts.figure("Prefix query vs full ZSCAN as the index grows",
                            xlabel="members in the index (log)", ylabel="time per query (µs, log)")
    ax.plot(n, [d["lex_server_us"] for d in rows], marker="o", color=charts.PALETTE[0],
            label="ZRANGE … BYLEX LIMIT 10, inside Redis")
    ax.plot(n, [d["lex_us"] for d in rows], marker="o", ls="--", color=charts.PALETTE[0],
            label="the same, at the client (p50)")
    ax.plot(n, [d["scan_server_us"] for d in rows], marker="s", color=charts.PALETTE[1],
            label="ZSCAN MATCH prefix*, all pages, inside Redis")
    ax.set_xscale("log")
    ax.set_yscale("log")

    def grow(f: str) -> float:
        return rows[-1][f] / rows[0][f] if rows[0][f] else float("nan")

    charts.finish(ax, summary=f"in this run, from {n[0]:,} to {n[-1]:,} members ({n[-1] // n[0]}×), the "
                  f"server's time per prefix query went ×{grow('lex_server_us'):.1f} and per full ZSCAN "
                  f"×{grow('scan_server_us'):.0f}; the prefix query at the client ×{grow('lex_us'):.1f}")


# -- the autocomplete box -----------------------------------------------------------------------

def keystrokes(ordered: Sequence[str], start: str = "re", n: int = 5) -> list[str]:
    """What a user types on the way to the first indexed word that starts with ``start`` and has at
    least ``n`` characters: its first 1, 2, ..., n characters."""
    word = next(w for w in ordered if w.startswith(start) and len(w) >= n)
    return [word[:i] for i in range(1, n + 1)]


class Autocomplete(H.Renderable):
    """A search box over a :class:`LexIndex` (ipywidgets); in text mode, a table of keystrokes."""

    def __init__(self, index: LexIndex, demo: Sequence[str] = ("r", "re", "red", "redi"), limit: int = 5) -> None:
        self.index, self.demo, self.limit = index, list(demo), limit

    def table(self) -> Table:
        return Table(["typed", "ZLEXCOUNT", f"first {self.limit} suggestions"],
                     [[t, self.index.count(t), ", ".join(self.index.prefix(t, self.limit))] for t in self.demo],
                     title="Autocomplete, one keystroke at a time")

    def _text(self) -> str:
        return repr(self.table())

    def __repr__(self) -> str:
        return self._text()

    def _html(self) -> str:
        return self.table()._html()

    def widget(self):
        import ipywidgets as w

        box = w.Text(value=self.demo[-1], description="search:", continuous_update=True)
        out = w.HTML()

        def redraw(_=None) -> None:
            typed = box.value
            hits = self.index.prefix(typed, self.limit) if typed else []
            items = "".join(f"<li>{H.esc(h)}</li>" for h in hits) or "<li><i>no match</i></li>"
            out.value = f"<div>{self.index.count(typed) if typed else 0} matches</div><ul>{items}</ul>"

        box.observe(redraw, names="value")
        redraw()
        return w.VBox([box, out])

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not text_mode():
            try:
                bundle = dict(self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {})
            except ImportError:
                bundle = {}
            if bundle:
                bundle["text/plain"] = repr(self)
                return bundle
        return {"text/plain": repr(self), "text/html": H.pre(repr(self))}


# -- going deeper: offset vs keyset pagination ------------------------------------------------------

def pagination_trial(r: redis.Redis, key: str, page: int = 250) -> dict[str, dict]:
    """Page through a copy of the index twice, ``LIMIT offset page`` and "continue after the last
    member" (keyset), while another client adds a word that sorts first ("!new0001", ...) after
    every page. Per method: the members returned, the ZRANGE calls, and the server's µs per call
    over the first and the last tenth of the pages (INFO commandstats)."""
    out = {}
    for method in ("offset", "keyset"):
        copy = f"{key}:paging"
        r.delete(copy)
        r.copy(key, copy)
        pages = r.zcard(copy) // page
        tenth = max(1, pages // 10)
        members: list[str] = []
        start: bytes | str = "-"
        calls, marks = 0, {"first": [server_time(r, "zrange")]}
        while True:
            if method == "offset":
                got = r.zrange(copy, "-", "+", bylex=True, offset=len(members), num=page)
            else:
                got = r.zrange(copy, start, "+", bylex=True, offset=0, num=page)
            calls += 1
            if calls == tenth:
                marks["first"].append(server_time(r, "zrange"))
            if calls == pages - tenth:
                marks["last"] = [server_time(r, "zrange")]
            if calls == pages:
                marks["last"].append(server_time(r, "zrange"))
            if not got:
                break
            members += got
            start = b"(" + got[-1].encode()
            if len(got) == page:                           # meanwhile another client inserts a word
                r.zadd(copy, {f"!new{calls:04d}": 0})      # that sorts first ("!" is byte 21)
        per_call = {k: (b[1] - a[1]) / max(1, b[0] - a[0]) for k, (a, b) in marks.items()}
        out[method] = {"members": members, "calls": calls, "first_us": per_call["first"],
                       "last_us": per_call["last"]}
        r.delete(copy)
    return out


def pagination_table(trial: dict[str, dict]) -> Table:
    rows = [[m, d["calls"], len(d["members"]), len(d["members"]) - len(set(d["members"])),
             d["first_us"], d["last_us"]] for m, d in trial.items()]
    return Table(["pagination", "ZRANGE calls", "members returned", "returned twice",
                  "server µs/call, first pages", "server µs/call, last pages"], rows,
                 fmt={"server µs/call, first pages": ".1f", "server µs/call, last pages": ".1f"},
                 title="Paging through the index while another client inserts",
                 note="server time from INFO commandstats: printed, never asserted")
