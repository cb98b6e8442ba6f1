"""The experiments of notebooks/19-memory-optimization.ipynb, each behind a one-line helper.

The pattern (:class:`~redistutor.patterns.memory_optimization.HashBuckets`) lives in the pattern
module; this module starts the notebook's own measuring server, reads the encoding limits with
``CONFIG GET``, loads the same objects in several layouts, measures ``used_memory`` and
``MEMORY USAGE`` next to Python's exact answer, injects the oversized value, stages the lost write
of a naive repack, fragments the allocator, and draws the charts. Every helper returns plain data
or a :class:`~redistutor.Table`.

``used_memory`` counts the whole server, so every measurement here runs on a server that nobody
else writes to (:func:`measuring_server`), emptied with a synchronous ``FLUSHALL`` first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, cast

from ..patterns.memory_optimization import HashBuckets, bucket_count, load
from ..race import wait_until
from ..tables import Table

N_OBJECTS = 20_000  # scaled down from the page's million so the notebook runs in seconds
PAGE_BUCKET = 1_000  # the bucket size the page recommends

LIMITS = ("hash-max-listpack-entries", "hash-max-listpack-value", "set-max-intset-entries",
          "set-max-listpack-entries", "set-max-listpack-value", "zset-max-listpack-entries",
          "zset-max-listpack-value", "list-max-listpack-size")


# -- the measuring server --------------------------------------------------------------------------

def measuring_server():
    """A fresh local Redis without modules that only this notebook writes to (``used_memory`` and
    ``CONFIG SET`` need one), even when the notebook's own server is shared (``REDIS_URL``).
    Re-running the setup cell replaces it."""
    from ..server import start_server

    return start_server("memory-optimization-lab", backend="local", modules=(), quiet=True)


def limits(r: Any) -> dict[str, int]:
    """The encoding limits, read from the running server with CONFIG GET (never typed in)."""
    return {name: int(r.config_get(name)[name]) for name in LIMITS}


def limits_table(r: Any) -> Table:
    rows = [[name, value] for name, value in limits(r).items()]
    return Table(["setting (CONFIG GET)", "value"], rows, title="Encoding limits of this server",
                 note="list-max-listpack-size -2 means: at most 8 KB per listpack node")


def used_memory(r: Any) -> int:
    """``used_memory`` without the clients' own buffers (``MEMORY STATS`` clients.normal): a big
    pipeline leaves query and reply buffers behind for a while, which are not the data's cost."""
    stats = r.memory_stats()
    return int(stats["total.allocated"]) - int(stats["clients.normal"])


def rehashed(r: Any) -> None:
    """Wait until the keyspace's hash table has finished growing. Redis rehashes incrementally:
    right after a bulk load the old table and the new one (twice its size) both exist for a few
    cron cycles, and ``used_memory`` counts both. Measure only once ``DEBUG HTSTATS`` shows one table."""
    wait_until(lambda: "rehashing" not in str(r.execute_command("DEBUG", "HTSTATS", 0)), 30,
               "the keyspace's incremental rehash")


def encoding(r: Any, key: str) -> str:
    return cast(str, r.object("encoding", key))


def usage(r: Any, key: str) -> int:
    return int(r.memory_usage(key, samples=0) or 0)


# -- encodings of each type ------------------------------------------------------------------------

def embstr_limit(r: Any, key: str) -> int:
    """The longest string value stored as ``embstr`` (a compile-time constant, so measured)."""
    longest = 0
    for n in range(1, 129):
        r.set(key, "x" * n)
        if encoding(r, key) == "embstr":
            longest = n
    r.delete(key)
    return longest


def encoding_rows(r: Any, prefix: str) -> list[tuple[str, str, str, int]]:
    """(type, contents, OBJECT ENCODING, MEMORY USAGE) for each type below and above its limit."""
    lim = limits(r)
    embstr = embstr_limit(r, f"{prefix}:probe")
    hf, hv = lim["hash-max-listpack-entries"], lim["hash-max-listpack-value"]
    si, zf = lim["set-max-intset-entries"], lim["zset-max-listpack-entries"]
    cases: list[tuple[str, str, Callable[[str], Any]]] = [
        ("string", "12345", lambda k: r.set(k, 12345)),
        ("string", f"{embstr} bytes", lambda k: r.set(k, "x" * embstr)),
        ("string", f"{embstr + 1} bytes", lambda k: r.set(k, "x" * (embstr + 1))),
        ("hash", f"{hf} fields of 1 byte", lambda k: r.hset(k, mapping={i: "v" for i in range(hf)})),
        ("hash", f"{hf + 1} fields of 1 byte", lambda k: r.hset(k, mapping={i: "v" for i in range(hf + 1)})),
        ("hash", f"1 field of {hv} bytes", lambda k: r.hset(k, "f", "x" * hv)),
        ("hash", f"1 field of {hv + 1} bytes", lambda k: r.hset(k, "f", "x" * (hv + 1))),
        ("set", f"{si} integers", lambda k: r.sadd(k, *range(si))),
        ("set", f"{si + 1} integers", lambda k: r.sadd(k, *range(si + 1))),
        ("set", "10 strings", lambda k: r.sadd(k, *[f"m{i}" for i in range(10)])),
        ("zset", f"{zf} members", lambda k: r.zadd(k, {f"m{i}": i for i in range(zf)})),
        ("zset", f"{zf + 1} members", lambda k: r.zadd(k, {f"m{i}": i for i in range(zf + 1)})),
        ("list", "100 short items", lambda k: r.rpush(k, *range(100))),
        ("list", "100 items of 100 bytes (> 8 KB)", lambda k: r.rpush(k, *["x" * 100] * 100)),
    ]
    rows = []
    for n, (kind, what, write) in enumerate(cases):
        key = f"{prefix}:{n}"
        r.delete(key)
        write(key)
        rows.append((kind, what, encoding(r, key), usage(r, key)))
        r.delete(key)
    return rows


def encoding_table(rows: list[tuple[str, str, str, int]]) -> Table:
    return Table(["type", "contents", "OBJECT ENCODING", "MEMORY USAGE (bytes)"], [list(x) for x in rows],
                 title="One key of each type, just below and just above its limit", fmt={"MEMORY USAGE (bytes)": ","})


# -- the step: MEMORY USAGE as a hash grows past its limit, and shrinks again ------------------

def grow_and_shrink(r: Any, key: str, upto: int) -> list[tuple[int, str, str, int]]:
    """HSET fields 1..upto one by one, then HDEL them back down to 1:
    (fields, "grow"/"shrink", encoding, MEMORY USAGE) after every command."""
    r.delete(key)
    rows = []
    for phase, order in (("grow", range(upto)), ("shrink", range(upto - 1, 0, -1))):
        p = r.pipeline(transaction=False)
        for i in order:
            if phase == "grow":
                p.hset(key, f"f{i}", "v")
            else:
                p.hdel(key, f"f{i}")
            p.hlen(key)
            p.object("encoding", key)
            p.memory_usage(key, samples=0)
        replies = p.execute()
        rows += [(replies[j + 1], phase, replies[j + 2], replies[j + 3]) for j in range(0, len(replies), 4)]
    r.delete(key)
    return rows


def step_trial(r: Any, key: str, lowered: int = 128) -> dict[int, list[tuple[int, str, str, int]]]:
    """The grow-and-shrink curve at the server's hash-max-listpack-entries, and again after
    ``CONFIG SET hash-max-listpack-entries lowered`` (restored afterwards): {limit: rows}."""
    default = limits(r)["hash-max-listpack-entries"]
    upto = default + default // 4
    out = {default: grow_and_shrink(r, key, upto)}
    r.config_set("hash-max-listpack-entries", lowered)
    try:
        out[lowered] = grow_and_shrink(r, key, upto)
    finally:
        r.config_set("hash-max-listpack-entries", default)
    return out


def first_flip(rows: list[tuple[int, str, str, int]]) -> tuple[int, int, int]:
    """(fields at the first hashtable, MEMORY USAGE just before, just after) while growing."""
    grow = [x for x in rows if x[1] == "grow"]
    for before, after in zip(grow, grow[1:]):
        if before[2] == "listpack" and after[2] == "hashtable":
            return after[0], before[3], after[3]
    raise ValueError("the hash never left listpack")


def plot_steps(curves: dict[int, list[tuple[int, str, str, int]]]) -> None:
    from .. import charts

    fig, ax = charts.figure("MEMORY USAGE of one hash, growing then shrinking",
                            xlabel="fields in the hash", ylabel="MEMORY USAGE (bytes, log)")
    for n, (limit, rows) in enumerate(sorted(curves.items(), reverse=True)):
        colour = charts.PALETTE[n]
        for phase, style in (("grow", "-"), ("shrink", ":")):
            pts = [(f, m) for f, ph, _, m in rows if ph == phase]
            ax.step([f for f, _ in pts], [m for _, m in pts], style, where="post", color=colour,
                    label=f"limit {limit}: {'HSET (growing)' if phase == 'grow' else 'HDEL (shrinking)'}")
        ax.axvline(limit, color=colour, alpha=0.4, linewidth=4)
    ax.set_yscale("log")
    limit = max(curves)
    at, before, after = first_flip(curves[limit])
    end = [x for x in curves[limit] if x[1] == "shrink"][-1]
    charts.finish(ax, summary=f"in this run the hash jumped from {before:,} to {after:,} bytes at {at} fields "
                  f"(limit {limit}); shrunk back to {end[0]} field it was still {end[2]}, {end[3]:,} bytes")


# -- layouts: one key per object vs buckets -------------------------------------------------------

def objects(n: int = N_OBJECTS, seed: int = 19) -> dict[int, str]:
    """``n`` display names of 5-16 bytes, the same every run (Python keeps the exact answer)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return {i: "".join(rng.choice(letters) for _ in range(rng.randint(5, 16))) for i in range(n)}


def _chunks(items: list[Any], size: int = 1_000) -> Iterable[list[Any]]:
    return (items[i:i + size] for i in range(0, len(items), size))


def _load_keys(r: Any, values: dict[int, str], name: Callable[[int], str]) -> None:
    """One string key per object, written with MSET 1,000 at a time (one round trip)."""
    p = r.pipeline(transaction=False)
    for chunk in _chunks(list(values.items())):
        p.mset({name(i): v for i, v in chunk})
    p.execute()


def _load_plain_buckets(r: Any, prefix: str, values: dict[int, str], size: int) -> None:
    """The page's way: HSET straight into buckets of ``size`` fields, no check of the limits."""
    by_key: dict[str, dict[str, str]] = {}
    for i, v in values.items():
        by_key.setdefault(f"{prefix}:{i // size}", {})[str(i % size)] = v
    p = r.pipeline(transaction=False)
    for key, mapping in by_key.items():
        p.hset(key, mapping=mapping)
    p.execute()


def _read_back(r: Any, where: list[tuple[str, str | None]]) -> list[Any]:
    """The values at ``(key, field)`` in order (field None: a string key): MGET for string keys,
    one HMGET per run of fields of the same hash, all in one round trip."""
    p = r.pipeline(transaction=False)
    if all(field is None for _, field in where):
        for chunk in _chunks(where):
            p.mget([k for k, _ in chunk])
    else:
        runs: list[tuple[str, list[str | None]]] = []
        for key, field in where:
            if runs and runs[-1][0] == key:
                runs[-1][1].append(field)
            else:
                runs.append((key, [field]))
        for key, fields in runs:
            p.hmget(key, fields)
    return [v for reply in p.execute() for v in reply]


def measure_layout(r: Any, name: str, values: dict[int, str], *, size: int | None = None,
                   per_key: Callable[[int], str] | None = None, checked: bool = True,
                   verify: bool = True) -> dict[str, Any]:
    """FLUSHALL, load ``values`` one way, and measure: used_memory growth, keys, encodings, and
    whether every value reads back equal to Python's dict.

    ``per_key``: one string key per object, named by it. Otherwise buckets of ``size`` fields,
    through :class:`HashBuckets` when ``checked`` (it refuses sizes above the limit) or by plain
    HSET when not. ``verify=False`` skips reading every value back (``equal`` is then None)."""
    r.flushall()
    base = used_memory(r)
    if per_key is not None:
        _load_keys(r, values, per_key)
        where: list[tuple[str, str | None]] = [(per_key(i), None) for i in values]
    elif checked:
        buckets = HashBuckets(r, "u", size)
        size = buckets.size
        load(buckets, values)
        where = [buckets.locate(i) for i in values]
    else:
        assert size is not None
        _load_plain_buckets(r, "u", values, size)
        where = [(f"u:{i // size}", str(i % size)) for i in values]
    rehashed(r)
    grown = used_memory(r) - base
    keys = sorted({k for k, _ in where})
    p = r.pipeline(transaction=False)
    for k in keys[:: max(1, len(keys) // 200)]:  # every bucket; a sample of 200 string keys
        p.object("encoding", k)
    encodings = sorted(set(p.execute()))
    equal = _read_back(r, where) == list(values.values()) if verify else None
    payload = sum(len(v) for v in values.values())
    out = {"layout": name, "objects": len(values), "keys": len(keys), "encodings": encodings,
           "expected_keys": len(values) if per_key is not None else bucket_count(len(values), cast(int, size)),
           "used_memory": grown, "per_object": grown / len(values), "payload": payload, "equal": equal}
    r.flushall()
    return out


def layouts(r: Any, values: dict[int, str]) -> list[dict[str, Any]]:
    """The naive layout, the pattern at the server's limit, and the page's 1000-field buckets at
    the server's limit and with the limit raised to fit them (restored afterwards)."""
    limit = limits(r)["hash-max-listpack-entries"]
    rows = [measure_layout(r, "one key per object (user:<id>:name)", values, per_key=lambda i: f"user:{i}:name"),
            measure_layout(r, f"HashBuckets, {limit} fields (the limit)", values, size=limit),
            measure_layout(r, f"page: {PAGE_BUCKET} fields, limit {limit}", values, size=PAGE_BUCKET, checked=False)]
    r.config_set("hash-max-listpack-entries", PAGE_BUCKET)
    try:
        rows.append(measure_layout(r, f"page: {PAGE_BUCKET} fields, limit raised to {PAGE_BUCKET}", values,
                                   size=PAGE_BUCKET))
    finally:
        r.config_set("hash-max-listpack-entries", limit)
    naive = rows[0]["used_memory"]
    for row in rows:
        row["saving"] = 1 - row["used_memory"] / naive
    return rows


def layout_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["layout", "keys", "encoding", "used_memory growth (bytes)", "bytes per object", "saving",
                  "reads = Python"],
                 [[x["layout"], x["keys"], "/".join(x["encodings"]), x["used_memory"], round(x["per_object"], 1),
                   f"{x['saving']:.0%}", x["equal"]] for x in rows],
                 title=f"{rows[0]['objects']:,} names ({rows[0]['payload']:,} bytes of payload) on a fresh server",
                 fmt={"used_memory growth (bytes)": ","},
                 note="used_memory growth leaves out client buffers (MEMORY STATS clients.normal)")


def bucket_sweep(r: Any, values: dict[int, str], sizes: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Bytes per object for buckets of each size (plain HSET, the server's limits untouched)."""
    limit = limits(r)["hash-max-listpack-entries"]
    sizes = sizes or sorted({16, 64, limit, limit + 1, limit * 2})
    return [measure_layout(r, f"{s} fields", values, size=s, checked=False, verify=False) | {"size": s}
            for s in sizes]


def plot_layouts(rows: list[dict[str, Any]], sweep: list[dict[str, Any]], limit: int) -> None:
    from .. import charts

    fig, (ax1, ax2) = charts.figure("What one small object costs", ncols=2, width=11, height=3.6)
    names = [x["layout"].split(" (")[0].replace("HashBuckets, ", "").replace(", limit", ",\nlimit") for x in rows]
    colours = [charts.BAD if x["encodings"] == ["hashtable"] or x["keys"] == x["objects"] else charts.OK for x in rows]
    ax1.barh(names[::-1], [x["per_object"] for x in rows][::-1], color=colours[::-1])
    ax1.set(title="per layout", xlabel="used_memory per object (bytes)", ylabel="")
    ax2.semilogx([x["size"] for x in sweep], [x["per_object"] for x in sweep], "o-", label="buckets (HSET)")
    ax2.axhline(rows[0]["per_object"], color=charts.BAD, linestyle="--", label="one key per object")
    ax2.axvline(limit, color="grey", linestyle=":", label=f"hash-max-listpack-entries ({limit})")
    ax2.set(title="per bucket size", xlabel="fields per bucket (log)", ylabel="used_memory per object (bytes)")
    best = min(sweep, key=lambda x: x["per_object"])
    over = [x for x in sweep if x["size"] > limit][0]
    charts.finish([ax1, ax2], summary=f"in this run one key per object cost {rows[0]['per_object']:.1f} bytes per "
                  f"object, buckets of {best['size']} fields {best['per_object']:.1f}, and buckets of "
                  f"{over['size']} fields (one past the limit, {'/'.join(over['encodings'])}) {over['per_object']:.1f}")


# -- key-name length --------------------------------------------------------------------------------

def key_name_sweep(r: Any, n: int = 10_000, lengths: Iterable[int] = (12, 16, 24, 32, 48, 64, 96, 128)
                   ) -> list[tuple[int, int, float]]:
    """``n`` keys with names of exactly ``L`` bytes and the value "v": (L, used_memory growth, per key)."""
    rows = []
    for length in lengths:
        r.flushall()
        base = used_memory(r)
        names = [f"k:{i:06d}:".ljust(length, "x") for i in range(n)]
        assert all(len(x) == length for x in names)
        p = r.pipeline(transaction=False)
        for chunk in _chunks(names):
            p.mset(dict.fromkeys(chunk, "v"))
        p.execute()
        rehashed(r)
        grown = used_memory(r) - base
        rows.append((length, grown, grown / n))
    r.flushall()
    return rows


def slope(rows: list[tuple[int, int, float]]) -> float:
    """Least-squares bytes of memory per byte of key name."""
    xs, ys = [x for x, _, _ in rows], [y for _, _, y in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def plot_key_names(rows: list[tuple[int, int, float]]) -> None:
    from .. import charts

    fig, ax = charts.figure("What a key's name costs", xlabel="key name length (bytes)",
                            ylabel="used_memory per key (bytes)")
    xs = [x for x, _, _ in rows]
    ax.plot(xs, [y for _, _, y in rows], "o-", label="measured (SET name v)")
    first = rows[0][2]
    ax.plot(xs, [first + (x - xs[0]) for x in xs], "--", color="grey", label="+1 byte per name byte (exact)")
    charts.finish(ax, summary=f"in this run each byte of key name cost {slope(rows):.2f} bytes of memory; "
                  f"{xs[0]}-byte names {rows[0][2]:.1f} bytes per key, {xs[-1]}-byte names {rows[-1][2]:.1f}")


# -- sets: intset, listpack, hashtable ---------------------------------------------------------------

def set_steps(r: Any, key: str) -> list[tuple[str, int, str, int]]:
    """One set taken through its encodings: (what was done, SCARD, encoding, MEMORY USAGE)."""
    lim = limits(r)
    si, sl, sv = lim["set-max-intset-entries"], lim["set-max-listpack-entries"], lim["set-max-listpack-value"]
    steps: list[tuple[str, Callable[[], Any]]] = [
        (f"SADD {si} integers", lambda: r.sadd(key, *range(si))),
        ("SADD one more integer", lambda: r.sadd(key, si)),
        ("(new key) SADD 10 integers", lambda: (r.delete(key), r.sadd(key, *range(10)))),
        ('SADD "ada" (not an integer)', lambda: r.sadd(key, "ada")),
        (f"SADD strings up to {sl} members", lambda: r.sadd(key, *[f"m{i}" for i in range(sl - 11)])),
        ("SADD one more string", lambda: r.sadd(key, "one-more")),
        ("SREM every string", lambda: r.srem(key, "ada", "one-more", *[f"m{i}" for i in range(sl - 11)])),
        (f"(new key) SADD 10 integers and one {sv + 1}-byte string",
         lambda: (r.delete(key), r.sadd(key, *range(10), "x" * (sv + 1)))),
    ]
    r.delete(key)
    rows = []
    for what, do in steps:
        do()
        rows.append((what, r.scard(key), encoding(r, key), usage(r, key)))
    r.delete(key)
    return rows


def set_table(rows: list[tuple[str, int, str, int]]) -> Table:
    return Table(["step", "SCARD", "OBJECT ENCODING", "MEMORY USAGE (bytes)"], [list(x) for x in rows],
                 title="One set through its encodings")


# -- the fault: one long value ---------------------------------------------------------------------------

def oversize_fault(r: Any, prefix: str, fields: int = 300) -> list[tuple[str, str, int, int]]:
    """A listpack bucket of ``fields`` names; another client writes one value one byte over the
    limit, then deletes it; then a copy (COPY), a rewrite (DUMP + RESTORE) and, after the same value
    once more, a reload of the whole dataset from an RDB file (DEBUG RELOAD, as at a restart).
    Rows: (step, encoding, MEMORY USAGE, HLEN)."""
    lim = limits(r)
    key, copy_key = f"{prefix}:7", f"{prefix}:7:copy"
    r.delete(key, copy_key)
    r.hset(key, mapping={str(i): f"name-{i}" for i in range(fields)})

    def row(step: str, k: str = key) -> tuple[str, str, int, int]:
        return (step, encoding(r, k), usage(r, k), r.hlen(k))

    rows = [row(f"{fields} short names")]
    r.hset(key, "bio", "x" * (lim["hash-max-listpack-value"] + 1))
    rows.append(row(f"HSET bio <{lim['hash-max-listpack-value'] + 1} bytes>"))
    r.hdel(key, "bio")
    rows.append(row("HDEL bio"))
    r.copy(key, copy_key)
    rows.append(row("COPY to a new key", copy_key))
    r.restore(key, 0, r.dump(key), replace=True)
    rows.append(row("DUMP + RESTORE ... REPLACE"))
    r.delete(copy_key)
    r.hset(key, "bio", "x" * (lim["hash-max-listpack-value"] + 1))
    r.hdel(key, "bio")
    rows.append(row("HSET bio + HDEL bio again"))
    r.execute_command("DEBUG", "RELOAD")  # save an RDB file and load it, as a restart would
    rows.append(row("DEBUG RELOAD (RDB save + load)"))
    r.delete(key)
    return rows


def fault_table(rows: list[tuple[str, str, int, int]]) -> Table:
    return Table(["step", "OBJECT ENCODING", "MEMORY USAGE (bytes)", "HLEN"], [list(x) for x in rows],
                 title="One bucket, one long value")


def naive_repack(r: Any, key: str, between: Callable[[], Any] | None = None) -> None:
    """Rewrite a hash so it is built afresh: read every field, delete, write them back (two round trips)."""
    fields = r.hgetall(key)
    if between:
        between()
    with r.pipeline(transaction=True) as p:
        p.delete(key)
        p.hset(key, mapping=fields)
        p.execute()


def repack_race(server: Any, key: str, fields: int = 300) -> dict[str, Any]:
    """A flipped bucket is repacked the naive way while another client adds a field between the
    repack's read and its write: what is left, and what was lost."""
    r, other = server.client(), server.client()
    r.delete(key)
    r.hset(key, mapping={str(i): f"name-{i}" for i in range(fields)})
    r.hset(key, "bio", "x" * 100)
    r.hdel(key, "bio")
    before = encoding(r, key)
    naive_repack(r, key, between=lambda: other.hset(key, "late", "written during the repack"))
    after = r.hgetall(key)
    out = {"encoding before": before, "encoding after": encoding(r, key), "fields written": fields + 1,
           "fields left": len(after), "lost": sorted({"late"} - set(after))}
    r.delete(key)
    other.close()
    return out


def race_table(race: dict[str, Any]) -> Table:
    return Table(["", "value"], [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in race.items()],
                 title="Naive repack (HGETALL, then DEL + HSET) while another client writes")


# -- fragmentation and MEMORY DOCTOR -------------------------------------------------------------------

MEMORY_FIELDS = ("used_memory", "used_memory_rss", "used_memory_peak", "mem_fragmentation_ratio",
                 "allocator_frag_ratio", "allocator_frag_bytes")


def doctor(r: Any) -> str:
    return cast(str, r.execute_command("MEMORY", "DOCTOR"))


def findings(report: str) -> list[str]:
    """The headings of MEMORY DOCTOR's findings (`` * Peak memory: ...`` -> ``Peak memory``), or its
    verdict when it has none ("Hi Sam, this instance is empty ..., my issues detector ..." ->
    "this instance is empty ...")."""
    found = [line[3:].split(":", 1)[0] for line in report.splitlines() if line.startswith(" * ")]
    return found or [report.split(".", 1)[0].removeprefix("Hi Sam, ").split(", my ", 1)[0]]


def fragmentation(r: Any, prefix: str, n: int = 30_000, keep: float = 0.2, value_bytes: int = 1_000,
                  seed: int = 5) -> dict[str, Any]:
    """Fill the server with ``n`` values, delete all but a random ``keep`` share, then let active
    defragmentation run and MEMORY PURGE return the emptied pages. INFO memory and MEMORY DOCTOR at
    each stage."""
    r.flushall()
    stages: list[tuple[str, dict[str, Any], str]] = []

    def stage(name: str) -> None:
        _settle(r)
        info = r.info("memory")
        stages.append((name, {f: info.get(f) for f in MEMORY_FIELDS}, doctor(r)))

    stage("empty")
    p = r.pipeline(transaction=False)
    for chunk in _chunks([f"{prefix}:{i}" for i in range(n)]):
        p.mset(dict.fromkeys(chunk, "x" * value_bytes))
    p.execute()
    stage(f"{n:,} values of {value_bytes} bytes")
    kept = set(random.Random(seed).sample(range(n), int(n * keep)))
    p = r.pipeline(transaction=False)
    for chunk in _chunks([f"{prefix}:{i}" for i in range(n) if i not in kept]):
        p.delete(*chunk)
    p.execute()
    stage(f"{n - len(kept):,} deleted at random")
    defrag = _active_defrag(r)
    if defrag:
        stage("after active defrag")
        _purge(r)
        stage("after MEMORY PURGE")
    r.flushall()
    return {"stages": stages, "defrag": defrag, "kept": len(kept)}


def _settle(r: Any) -> None:
    """Wait until INFO's allocator figures describe the present. Redis samples RSS and the
    allocator's statistics in its cron (every 100 ms or so), while used_memory is exact at once:
    wait until the sampled ``allocator_allocated`` agrees with ``used_memory``."""

    def fresh() -> bool:
        info = r.info("memory")
        used, sampled = int(info["used_memory"]), int(info["allocator_allocated"])
        return abs(sampled - used) <= 0.1 * used + 1_000_000

    wait_until(fresh, 30, "INFO memory's sampled allocator figures")


def _purge(r: Any, patience: float = 10.0) -> None:
    """MEMORY PURGE (the allocator returns emptied pages to the OS), then give the cron a moment to
    sample the new RSS: poll until it changes, for at most ``patience`` seconds (no failure if not)."""
    before = int(r.info("memory")["used_memory_rss"])
    r.execute_command("MEMORY", "PURGE")
    try:
        wait_until(lambda: int(r.info("memory")["used_memory_rss"]) != before, patience, "a new RSS sample")
    except TimeoutError:
        pass


def _active_defrag(r: Any) -> bool:
    """Turn active defragmentation on until the allocator's fragmentation is low (then off again);
    False if this build cannot (it needs Redis's own jemalloc).

    Done when the sampled ``allocator_frag_ratio`` is under 1.3 and defragmentation has either
    moved something or is not running. It may keep running at its minimum CPU without ever getting
    under its own thresholds (a few hundred KB of unavoidable fragmentation), so "running" alone
    is not a finish line."""
    old = r.config_get("active-defrag-*")
    start = int(r.info("stats").get("active_defrag_hits", 0))  # before it can start
    try:
        r.config_set("active-defrag-ignore-bytes", "1mb")
        r.config_set("active-defrag-threshold-lower", 5)
        try:
            r.config_set("activedefrag", "yes")
        except Exception:  # redis.ResponseError: built without Redis's jemalloc
            return False

        def done() -> bool:
            info = r.info()
            moved = int(info.get("active_defrag_hits", 0)) > start
            idle = not int(info.get("active_defrag_running", 0))
            return float(info["allocator_frag_ratio"]) < 1.3 and (moved or idle)

        wait_until(done, 60, "active defragmentation")
        _settle(r)
    finally:
        r.config_set("activedefrag", "no")
        for name in ("active-defrag-ignore-bytes", "active-defrag-threshold-lower"):
            r.config_set(name, old[name])
    return True


def fragmentation_table(frag: dict[str, Any]) -> Table:
    rows = [[name, info["used_memory"], info["used_memory_rss"], info["mem_fragmentation_ratio"],
             info["allocator_frag_ratio"], "; ".join(findings(report))] for name, info, report in frag["stages"]]
    return Table(["stage", "used_memory", "RSS", "RSS / used", "allocator frag", "MEMORY DOCTOR says"], rows,
                 title="Fragmentation on the measuring server (bytes)", fmt={"used_memory": ",", "RSS": ","})


def doctor_text(report: str, width: int = 100) -> str:
    """MEMORY DOCTOR's report with each paragraph wrapped at ``width`` (it sends long lines)."""
    import textwrap

    return "\n\n".join(textwrap.fill(p.strip(), width, subsequent_indent="  " if p.strip().startswith("*") else "")
                       for p in report.strip().split("\n\n"))


def time_hget(r: Any, sizes: Iterable[int] = (64, 256, 1_024, 4_096), reads: int = 300
              ) -> list[tuple[int, str, float, int]]:
    """Going deeper: HGET of a random field in one hash of ``n`` fields, first with the listpack limit
    raised to fit every size, then at the server's own limit:
    (fields, encoding, server microseconds per HGET, hash-max-listpack-entries)."""
    sizes = list(sizes)
    default = limits(r)["hash-max-listpack-entries"]
    rng = random.Random(1)
    rows = []
    for enc_limit in (max(sizes), default):
        r.config_set("hash-max-listpack-entries", enc_limit)
        try:
            for n in sizes:
                r.delete("deep")
                r.hset("deep", mapping={f"field:{i}": "v" for i in range(n)})
                before = r.info("commandstats").get("cmdstat_hget", {"usec": 0, "calls": 0})
                p = r.pipeline(transaction=False)
                for _ in range(reads):
                    p.hget("deep", f"field:{rng.randrange(n)}")
                p.execute()
                after = r.info("commandstats")["cmdstat_hget"]
                rows.append((n, encoding(r, "deep"),
                             (after["usec"] - before["usec"]) / (after["calls"] - before["calls"]), enc_limit))
        finally:
            r.config_set("hash-max-listpack-entries", default)
    r.delete("deep")
    return rows


def plot_hget(rows: list[tuple[int, str, float, int]]) -> None:
    from .. import charts

    fig, ax = charts.figure("HGET cost by encoding", xlabel="fields in the hash (log)",
                            ylabel="server time per HGET (µs, log)")
    for n, limit in enumerate(sorted({x[3] for x in rows}, reverse=True)):
        pts = [x for x in rows if x[3] == limit]
        ax.loglog([x[0] for x in pts], [max(x[2], 0.01) for x in pts], "-", color=charts.PALETTE[n],
                  label=f"hash-max-listpack-entries {limit}")
        for enc, marker in (("listpack", "o"), ("hashtable", "s")):
            sel = [x for x in pts if x[1] == enc]
            ax.loglog([x[0] for x in sel], [max(x[2], 0.01) for x in sel], marker, color=charts.PALETTE[n],
                      label=f"  {enc}" if sel else None)
    big = max(x[0] for x in rows)
    lp = [x for x in rows if x[0] == big and x[1] == "listpack"]
    ht = [x for x in rows if x[0] == big and x[1] == "hashtable"]
    parts = [f"an HGET in a {big:,}-field listpack took {lp[0][2]:.2f} µs on the server" if lp else "",
             f"in a hash table of the same size {ht[0][2]:.2f} µs" if ht else ""]
    charts.finish(ax, summary="in this run " + "; ".join(x for x in parts if x))


def limit_change_trial(r: Any, key: str, fields: int = 300, lowered: int = 128) -> list[tuple[str, str]]:
    """A listpack hash of ``fields`` fields while ``hash-max-listpack-entries`` is lowered below that
    (restored afterwards): (step, encoding) after a read and after a write of an existing field."""
    default = limits(r)["hash-max-listpack-entries"]
    r.delete(key)
    r.hset(key, mapping={f"f{i}": "v" for i in range(fields)})
    rows = [(f"HSET {fields} fields (limit {default})", encoding(r, key))]
    r.config_set("hash-max-listpack-entries", lowered)
    try:
        rows.append((f"CONFIG SET hash-max-listpack-entries {lowered}", encoding(r, key)))
        r.hget(key, "f1")
        rows.append(("HGET f1", encoding(r, key)))
        r.hset(key, "f1", "w")
        rows.append(("HSET f1 (an existing field)", encoding(r, key)))
    finally:
        r.config_set("hash-max-listpack-entries", default)
    r.delete(key)
    return rows
