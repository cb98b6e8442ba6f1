"""The experiments of notebooks/20-probabilistic-data-structures.ipynb, each behind a one-line helper.

The pattern (:mod:`redistutor.patterns.probabilistic_data_structures`) is a few commands; the lesson
is in the numbers. Every helper here fills structures on the notebook's own server, computes the
exact answer in Python beside it, and returns plain data, a :class:`~redistutor.Table` or a chart.
Items are generated from fixed seeds, and the server's hash functions are fixed too, so every
estimate is the same on every run: assertions on them are reproducible, not lucky.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

import numpy as np
import redis

from .. import charts
from ..tables import Table

HLL_REGISTERS = 16384                       # 2^14 registers of 6 bits (src/hyperloglog.c, HLL_P = 14)
HLL_STD_ERROR = 1.04 / math.sqrt(HLL_REGISTERS)   # 0.8125 %
HLL_DENSE_BYTES = 16 + HLL_REGISTERS * 6 // 8      # header + registers = 12,304


def items(n: int, seed: int, prefix: str = "") -> list[str]:
    """n distinct visitor ids from a seed (sampled from a huge id space, so runs are independent)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 2**62, size=int(n * 1.01) + 16, dtype=np.int64))
    rng.shuffle(ids)
    return [f"{prefix}{x:x}" for x in ids[:n].tolist()]


def _batched(r: redis.Redis, command: str, key: str, values: list, size: int = 5000) -> list:
    p = r.pipeline(transaction=False)
    for i in range(0, len(values), size):
        p.execute_command(command, key, *values[i:i + size])
    return p.execute()


# -- the naive way: exact sets, summed counts ---------------------------------------------------

def week_of_visitors(population: int = 12_000, per_day: int = 5_000, days: int = 7, seed: int = 20):
    """Each day ``per_day`` distinct visitors drawn from one population: regulars come back."""
    rng = np.random.default_rng(seed)
    people = items(population, seed, prefix="u:")
    return {f"day{d + 1}": [people[i] for i in rng.choice(population, per_day, replace=False)]
            for d in range(days)}


def naive_week(r: redis.Redis, prefix: str, week: dict[str, list[str]]) -> dict[str, Any]:
    """One exact Set per day; the week counted by summing SCARDs (wrong) and by SUNION (right, big)."""
    for day, visitors in week.items():
        _batched(r, "SADD", f"{prefix}:{day}", visitors)
    keys = [f"{prefix}:{d}" for d in week]
    return {"sum of daily counts": sum(r.scard(k) for k in keys),
            "exact (SUNION)": len(r.sunion(keys)),
            "bytes": sum(r.memory_usage(k) for k in keys)}


# -- HyperLogLog ---------------------------------------------------------------------------------

def hll_error_runs(r: redis.Redis, prefix: str, runs: int = 20, n: int = 50_000) -> list[float]:
    """Relative error (estimate - n) / n of ``runs`` independent HLLs of n distinct items each."""
    errors = []
    for k in range(runs):
        key = f"{prefix}:{k}"
        _batched(r, "PFADD", key, items(n, seed=1000 + k), size=10_000)
        errors.append((r.pfcount(key) - n) / n)
        r.delete(key)
    return errors


def plot_hll_errors(errors: list[float]) -> dict[str, float]:
    """Histogram of the measured errors with the theoretical ±1σ lines; returns the statistics."""
    pct = [100 * e for e in errors]
    sd = statistics.pstdev(pct)
    within = sum(abs(e) <= 100 * HLL_STD_ERROR for e in pct)
    fig, ax = charts.figure("HyperLogLog relative error over independent runs",
                            xlabel="(estimate − exact) / exact (%)", ylabel="runs")
    counts, edges, _ = ax.hist(pct, bins=12, color=charts.PALETTE[0], label=f"{len(pct)} runs")
    sigma, width = 100 * HLL_STD_ERROR, edges[1] - edges[0]
    xs = [-3 * sigma + i * 6 * sigma / 80 for i in range(81)]
    ax.plot(xs, [len(pct) * width * math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))
                 for x in xs], color=charts.PALETTE[7], label="normal, σ = 0.81 % (theory)")
    for x in (-100 * HLL_STD_ERROR, 100 * HLL_STD_ERROR):
        ax.axvline(x, color=charts.PALETTE[3], linestyle="--",
                   label="±1.04/√16384 = ±0.81 %" if x > 0 else None)
    charts.finish(ax, summary=f"in this run the measured standard deviation was {sd:.2f} % "
                  f"(theory {100 * HLL_STD_ERROR:.2f} %); {within} of {len(pct)} runs fell within ±1σ, "
                  f"the worst was {max(pct, key=abs):+.2f} %")
    return {"sd %": sd, "within 1 sigma": within, "worst %": max(map(abs, pct))}


def hll_encoding(r: redis.Redis, key: str) -> str:
    """'sparse' or 'dense', from byte 4 of the HLL header ("HYLL" + encoding)."""
    raw = r.getrange(key, 4, 4)
    return {"\x00": "dense", "\x01": "sparse", b"\x00": "dense", b"\x01": "sparse"}[raw]


def hll_growth(r: redis.Redis, key: str, sizes=(1, 10, 100, 300, 600, 1000, 1200, 1400, 1600, 1800,
                                                2000, 3000, 10_000, 100_000)) -> list[tuple]:
    """Add distinct items up to each size: (n, STRLEN, MEMORY USAGE, encoding, PFCOUNT)."""
    r.delete(key)
    pool, rows, done = items(max(sizes), seed=7), [], 0
    for n in sizes:
        _batched(r, "PFADD", key, pool[done:n], size=10_000) if n > done else None
        done = n
        rows.append((n, r.strlen(key), r.memory_usage(key), hll_encoding(r, key), r.pfcount(key)))
    return rows


def plot_hll_growth(rows: list[tuple], sparse_max: int) -> None:
    n, size = [x[0] for x in rows], [x[1] for x in rows]
    flip = next(x for x in rows if x[3] == "dense")
    fig, ax = charts.figure("HyperLogLog size as distinct items grow", xlabel="distinct items (log scale)",
                            ylabel="STRLEN (bytes)")
    ax.step(n, size, where="post", marker="o", label="HLL string")
    ax.axhline(sparse_max, color=charts.PALETTE[3], linestyle="--", label=f"hll-sparse-max-bytes = {sparse_max}")
    ax.set_xscale("log")
    last_sparse = max(x[0] for x in rows if x[3] == "sparse")
    charts.finish(ax, summary=f"in this run the HLL stayed sparse up to {last_sparse:,} "
                  f"items, then was {flip[1]:,} bytes (dense) from {flip[0]:,} items on, up to {n[-1]:,}")


def hll_table(rows: list[tuple]) -> Table:
    return Table(["distinct items", "STRLEN", "MEMORY USAGE", "encoding", "PFCOUNT"], [list(x) for x in rows],
                 title="One HyperLogLog, growing")


# -- Bloom filters -------------------------------------------------------------------------------

def bloom_sizes(r: redis.Redis, prefix: str, capacity: int = 1_000_000, error: float = 0.01) -> dict[str, float]:
    """Bits per item that BF.RESERVE allocates, for a scaling (default) and a NONSCALING filter."""
    out = {}
    for name, kw in (("scaling (default)", {}), ("NONSCALING", {"noScale": True})):
        key = f"{prefix}:{name.split()[0].lower()}"
        r.delete(key)
        r.bf().reserve(key, error, capacity, **kw)
        out[name] = r.bf().info(key)["Size"] * 8 / capacity
        r.delete(key)
    return out


def bloom_fill_trial(r: redis.Redis, key: str, capacity: int = 10_000, error: float = 0.01, *,
                     nonscaling: bool, fill_to: float = 1.0, steps: int = 10, probes: int = 5_000):
    """Fill a filter in steps; after each, the false-positive rate on never-added probes.

    Then BF.MADD of 1,000 more items. Returns ``{"rows": [(added, fill, fp rate, bytes, filters)],
    "false negatives": n, "reply length": BF.MADD's reply to the 1,000, "error": the first error in
    it, "extra found": how many of the 1,000 the filter then reports, "inserted": BF.INFO's count}``.
    """
    r.delete(key)
    r.bf().reserve(key, error, capacity, **({"noScale": True} if nonscaling else {}))
    total = int(capacity * fill_to)
    added, probe = items(total, seed=31, prefix="in:"), items(probes, seed=32, prefix="out:")
    rows, done = [], 0
    for s in range(1, steps + 1):
        upto = total * s // steps
        _batched(r, "BF.MADD", key, added[done:upto])
        done = upto
        fp: list[int] = sum(_batched(r, "BF.MEXISTS", key, probe), [])
        info = r.bf().info(key)
        rows.append((done, done / capacity, sum(fp) / probes, info["Size"], info["Number of filters"]))
    found: list[int] = sum(_batched(r, "BF.MEXISTS", key, added), [])
    extra = items(1000, seed=33, prefix="more:")
    reply = r.execute_command("BF.MADD", key, *extra)
    errors = [str(x) for x in reply if isinstance(x, Exception)]
    return {"rows": rows, "false negatives": found.count(0), "reply length": len(reply),
            "error": errors[0] if errors else None, "extra found": sum(r.bf().mexists(key, *extra)),
            "inserted": r.bf().info(key)["Number of items inserted"]}


def bloom_theory(fill: float, error: float = 0.01) -> float:
    """False-positive rate of one Bloom filter sized for ``error`` at capacity, at ``fill`` × capacity:
    (1 - e^(-k n / m))^k with m / n = -ln(error) / ln(2)^2 bits per item and k = ceil(-log2(error))."""
    bits = -math.log(error) / math.log(2) ** 2
    k = math.ceil(-math.log2(error))
    return (1 - math.exp(-k * fill / bits)) ** k


def plot_bloom_fill(trials: dict[str, dict], error: float, overfill: float = 4.0) -> None:
    fig, ax = charts.figure("Bloom filter false-positive rate as it fills", xlabel="items added / capacity",
                            ylabel="false positives (%, log scale)")
    for name, t in trials.items():
        seen = [x for x in t["rows"] if x[2] > 0]          # a log axis has no 0: steps with no false positive
        ax.plot([x[1] for x in seen], [100 * x[2] for x in seen], marker="o", label=f"{name} (measured)")
    xs = [0.25 + i * (overfill - 0.25) / 60 for i in range(61)]
    ax.plot(xs, [100 * bloom_theory(x, error) for x in xs], linestyle=":", color=charts.PALETTE[7],
            label="one filter past capacity\n(formula; Redis refuses)")
    ax.axhline(100 * error, color=charts.PALETTE[3], linestyle="--", label=f"configured {100 * error:g} %")
    ax.set_yscale("log")
    at_full = {n: next(x[2] for x in t["rows"] if x[1] >= 1.0) for n, t in trials.items()}
    last = {n: t["rows"][-1] for n, t in trials.items()}
    at_capacity = ", ".join(f"{n} {100 * v:.2f} %" for n, v in at_full.items())
    charts.finish(ax, summary="in this run, at capacity: " + at_capacity
                  + "; at the end: " + ", ".join(f"{n} {100 * x[2]:.2f} % at {x[1]:.1f}× ({x[4]} sub-filters)"
                                                  for n, x in last.items())
                  + f"; one filter at {overfill:.0f}× would pass {100 * bloom_theory(overfill, error):.0f} %")


def bloom_table(trials: dict[str, dict]) -> Table:
    rows = [[n, f"{x[1]:.1f}×", x[0], f"{100 * x[2]:.2f}", x[3], x[4]] for n, t in trials.items() for x in t["rows"]
            if round(x[1] * 10) % 5 == 0]
    return Table(["filter", "fill", "items", "false positives %", "bytes", "sub-filters"], rows,
                 title="Bloom filters reserved at 1 %")


# -- Cuckoo filters ------------------------------------------------------------------------------

def cuckoo_trial(r: redis.Redis, key: str, n: int = 500) -> dict[str, Any]:
    """Add n items, delete a tenth of them; then delete one item that was never added but collides."""
    r.delete(key)
    r.cf().reserve(key, 1000)
    names = [f"user:{i}" for i in range(n)]
    for name in names:
        r.cf().add(key, name)
    gone = names[:n // 10]
    for name in gone:
        r.cf().delete(key, name)
    still = r.cf().mexists(key, *names)
    out = {"deleted": len(gone), "deleted still found": sum(still[:n // 10]),
           "kept found": sum(still[n // 10:]), "kept": n - n // 10}
    # The hazard: a never-added name that the filter "finds" (a fingerprint collision) ...
    stranger = next(f"stranger:{i}" for i in range(100_000) if r.cf().exists(key, f"stranger:{i}"))
    before = dict(zip(names, r.cf().mexists(key, *names)))
    r.cf().delete(key, stranger)          # ... deleted by a caller who never added it
    after = dict(zip(names, r.cf().mexists(key, *names)))
    out["stranger"] = stranger
    out["lost"] = [x for x in names if before[x] and not after[x]]
    return out


# -- Count-Min Sketch and Top-K: a Zipf stream ----------------------------------------------------

def zipf_stream(events: int = 100_000, universe: int = 5_000, a: float = 1.1, seed: int = 5) -> list[str]:
    """Page views: a few pages get most of the traffic (Zipf, bounded to ``universe`` pages)."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, universe + 1) ** a
    ids = rng.choice(universe, size=events, p=weights / weights.sum())
    return [f"/page/{i}" for i in ids]


def cms_trial(r: redis.Redis, key: str, stream: list[str], error: float = 0.001, prob: float = 0.01):
    """CMS.INITBYPROB, count the stream, query every item; the estimates beside the true counts."""
    r.delete(key)
    r.cms().initbyprob(key, error, prob)
    true = Counter(stream)
    for i in range(0, len(stream), 10_000):
        batch = Counter(stream[i:i + 10_000])
        r.cms().incrby(key, list(batch), list(batch.values()))
    names = sorted(true)
    est = sum((r.cms().query(key, *names[i:i + 2000]) for i in range(0, len(names), 2000)), [])
    info = r.cms().info(key)
    over = [e - true[n] for n, e in zip(names, est)]
    bound = error * len(stream)
    return {"width": info["width"], "depth": info["depth"], "N": info["count"], "items": len(names),
            "under": sum(o < 0 for o in over), "max over": max(over), "bound": bound,
            "over bound": sum(o > bound for o in over), "exact": sum(o == 0 for o in over),
            "over": over, "true": [true[n] for n in names]}


def cms_table(c: dict[str, Any]) -> Table:
    rows = [["width × depth (from CMS.INFO)", f"{c['width']:,} × {c['depth']}"],
            ["events counted N", f"{c['N']:,}"], ["distinct pages", f"{c['items']:,}"],
            ["estimates below the true count", c["under"]], ["estimates exactly right", f"{c['exact']:,}"],
            ["largest overestimate", c["max over"]], ["bound ε·N", f"{c['bound']:g}"],
            ["estimates over the bound", c["over bound"]]]
    return Table(["CMS.INITBYPROB 0.001 0.01", "value"], rows, title="Count-Min Sketch vs exact counts")


def plot_cms(c: dict[str, Any]) -> None:
    fig, ax = charts.figure("Count-Min Sketch: estimate − true count, per page", xlabel="true count (views, log scale)",
                            ylabel="overestimate (views)")
    ax.scatter(c["true"], c["over"], s=6, alpha=0.5, label="one page")
    ax.axhline(c["bound"], color=charts.PALETTE[3], linestyle="--", label=f"ε·N = {c['bound']:g}")
    ax.axhline(0, color=charts.PALETTE[7], linewidth=0.8)
    ax.set_xscale("log")
    charts.finish(ax, summary=f"in this run no estimate was below its true count ({c['under']} under), the largest "
                  f"overestimate was {c['max over']} views against a bound of {c['bound']:g}, and "
                  f"{c['exact']:,} of {c['items']:,} pages were counted exactly")


def topk_trial(r: redis.Redis, key: str, stream: list[str], k: int = 10) -> dict[str, Any]:
    """TOPK.RESERVE k, add the stream in order; its list beside Python's exact top k."""
    r.delete(key)
    r.topk().reserve(key, k, 100, 7, 0.925)          # width 100, depth 7 counters, decay 0.925
    _batched(r, "TOPK.ADD", key, stream, size=5000)
    listed = r.topk().list(key, withcount=True)
    got = list(zip(listed[::2], listed[1::2]))
    exact = Counter(stream).most_common(k)
    return {"topk": got, "exact": exact, "bytes": r.memory_usage(key)}


def topk_table(t: dict[str, Any]) -> Table:
    rows = [[i + 1, e[0], e[1], g[0], g[1]] for i, (e, g) in enumerate(zip(t["exact"], t["topk"]))]
    return Table(["rank", "exact page", "views", "TOPK.LIST", "its count"], rows, title="Top 10 pages")


# -- T-Digest ------------------------------------------------------------------------------------

QUANTILES = (0.5, 0.9, 0.99, 0.999)


def tdigest_trial(r: redis.Redis, key: str, n: int = 100_000, seed: int = 9) -> dict[str, Any]:
    """Latencies (log-normal, ms) into a t-digest; its quantiles beside numpy's exact ones."""
    data = np.random.default_rng(seed).lognormal(mean=3.0, sigma=0.8, size=n)
    r.delete(key)
    r.tdigest().create(key, 100)
    for i in range(0, n, 20_000):
        r.tdigest().add(key, [float(x) for x in data[i:i + 20_000]])
    est = [float(x) for x in r.tdigest().quantile(key, *QUANTILES)]
    exact = [float(np.quantile(data, q)) for q in QUANTILES]
    rank = [float(np.mean(data <= e)) for e in est]     # which quantile the estimate really is
    return {"q": list(QUANTILES), "estimate": est, "exact": exact, "rank": rank,
            "bytes": r.memory_usage(key), "raw bytes": n * 8}


def tdigest_table(t: dict[str, Any]) -> Table:
    rows = [[f"p{100 * q:g}", e, x, f"{100 * (e - x) / x:+.2f}", f"{100 * k:.3f}"]
            for q, e, x, k in zip(t["q"], t["estimate"], t["exact"], t["rank"])]
    return Table(["quantile", "TDIGEST.QUANTILE (ms)", "numpy exact (ms)", "error %", "really the p…"], rows,
                 fmt={"TDIGEST.QUANTILE (ms)": ".2f", "numpy exact (ms)": ".2f"}, title="Latency quantiles")


# -- memory: Set vs HLL vs Bloom ------------------------------------------------------------------

def memory_trial(r: redis.Redis, prefix: str, sizes=(100, 1_000, 10_000, 100_000)) -> dict[str, list[int]]:
    """MEMORY USAGE of the same n ids as a Set, a HyperLogLog and a Bloom filter (1 %, capacity n)."""
    out: dict[str, list[int]] = {"Set": [], "HyperLogLog": [], "Bloom 1 %": []}
    for n in sizes:
        ids = items(n, seed=n, prefix="user:")
        _batched(r, "SADD", f"{prefix}:set", ids)
        _batched(r, "PFADD", f"{prefix}:hll", ids)
        r.bf().reserve(f"{prefix}:bloom", 0.01, n)
        _batched(r, "BF.MADD", f"{prefix}:bloom", ids)
        for name, k in zip(out, ("set", "hll", "bloom")):
            out[name].append(r.memory_usage(f"{prefix}:{k}"))
        r.delete(f"{prefix}:set", f"{prefix}:hll", f"{prefix}:bloom")
    return out


def plot_memory(sizes, mem: dict[str, list[int]]) -> None:
    fig, ax = charts.figure("Memory for n distinct ids", xlabel="distinct ids (log scale)",
                            ylabel="MEMORY USAGE (bytes, log scale)")
    for name, b in mem.items():
        ax.plot(sizes, b, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    n = sizes[-1]
    charts.finish(ax, summary=f"in this run, at {n:,} ids: Set {mem['Set'][-1]:,} B, Bloom {mem['Bloom 1 %'][-1]:,} B, "
                  f"HLL {mem['HyperLogLog'][-1]:,} B; "
                  f"the Set was {mem['Set'][-1] / mem['HyperLogLog'][-1]:.0f}× the HLL")
