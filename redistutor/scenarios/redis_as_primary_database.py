"""Scenarios for notebooks/27-redis-as-primary-database.ipynb: crashes, policies and measurements.

Each helper starts its own throwaway lab nodes (real redis-servers on this machine's disk), does
one experiment and returns plain data; the ``*_table`` and ``plot_*`` helpers turn that data into
views. Nothing here asserts: the notebook's assertion cells do.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, cast

import redis

from .. import _guard
from ..exceptions import ServerStartError
from ..lab import Node, Replicated, Workers
from ..patterns.redis_as_primary_database import Users, durable_set
from ..race import run_in_thread, wait_until
from ..server import free_port, spawn_redis
from ..tables import Table

# mode -> (Node persistence, extra config, what it is)
MODES: dict[str, tuple[str, dict[str, Any], str]] = {
    "none": ("none", {}, "no persistence"),
    "rdb": ("rdb", {"save": ""}, "RDB only (one SAVE mid-stream)"),   # "" clears the node's "1 1"
    "aof-no": ("aof-everysec", {"appendfsync": "no"}, "AOF, appendfsync no"),
    "aof-everysec": ("aof-everysec", {}, "AOF, appendfsync everysec"),
    "aof-always": ("aof-always", {}, "AOF, appendfsync always"),
}


def _node(name: str, mode: str, **config: Any) -> Node:
    persistence, extra, _ = MODES[mode]
    return Node(name, persistence=persistence, config={**extra, **config}).start()


def _aof_written(node: Node) -> None:
    """Until every acknowledged write has been handed to the kernel (see the fault callout)."""
    wait_until(lambda: not node.r.info("persistence").get("aof_buffer_length", 0), 10,
               f"{node.name}'s AOF buffer to be written", step=0.01)


# -- the defaults of a fresh server -------------------------------------------------------------

DEFAULT_SETTINGS = ("appendonly", "appendfsync", "save", "aof-use-rdb-preamble", "aof-load-truncated",
                    "maxmemory", "maxmemory-policy")


def fresh_defaults(binary: str | os.PathLike | None = None) -> dict[str, str]:
    """CONFIG GET of a redis-server started with no settings but a port (nothing from redistutor)."""
    from .. import provision

    binary = binary or provision.ensure().path
    port, tmp = free_port(), Path(_guard.private_dir("redistutor-defaults-"))
    proc = spawn_redis([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp)], cwd=tmp)
    c = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    try:
        wait_until(lambda: _pings(c), 15, "the bare redis-server to answer", step=0.01)
        return {k: cast(dict, c.config_get(k))[k] for k in DEFAULT_SETTINGS}
    finally:
        c.close()
        proc.kill()
        proc.wait()
        _guard.release_pid(proc.pid)
        shutil.rmtree(tmp, ignore_errors=True)
        _guard.release_dir(str(tmp))


def _pings(c: redis.Redis) -> bool:
    try:
        return bool(c.ping())
    except redis.ConnectionError:
        return False


def defaults_table(defaults: dict[str, str]) -> Table:
    return Table(["setting", "a fresh Redis 8 (no config file)"], [[k, v or '""'] for k, v in defaults.items()],
                 title="What you get if you configure nothing")


# -- acknowledged-write loss under kill -9 ------------------------------------------------------


def loss_trial(mode: str, *, kill_after: int = 1000, snapshot_at: int = 400) -> dict[str, Any]:
    """One writer RPUSHes sequence numbers 1, 2, ... and notes each acknowledged one; once
    ``kill_after`` are acknowledged the server is killed with SIGKILL while the writer is still
    writing. Restart on the same files; compare what is there with what was acknowledged.

    For ``rdb`` the writer's own connection runs SAVE after write ``snapshot_at``.
    """
    node = _node(f"loss-{mode}", mode)
    c = node.client(socket_timeout=10)
    acked: list[int] = []
    reached = threading.Event()

    def writer() -> None:
        seq = 0
        try:
            while True:
                seq += 1
                c.rpush("log", seq)
                acked.append(seq)                      # the server said OK: acknowledged
                if mode == "rdb" and seq == snapshot_at:
                    c.save()
                if seq == kill_after:
                    reached.set()
        except redis.RedisError:
            pass                                       # the server is gone
        finally:
            reached.set()

    try:
        done = run_in_thread(writer, thread_name=f"writer-{mode}")
        reached.wait(120)
        info = node.r.info("persistence")
        node.kill()                                    # kill -9 while the writer is mid-stream
        done.result(timeout=30)
        node.restart()
        kept = [int(x) for x in node.r.lrange("log", 0, -1)]
    finally:
        c.close()
        node.stop()
    ack = set(acked)
    return {"mode": mode, "acknowledged": len(acked), "kept": len(kept),
            "lost": sorted(ack - set(kept)), "unacknowledged_kept": sorted(set(kept) - ack),
            "prefix": kept == list(range(1, len(kept) + 1)),
            "aof_delayed_fsync": int(info.get("aof_delayed_fsync", 0))}


def loss_trials(modes: tuple[str, ...] = tuple(MODES), **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`loss_trial` for every mode, each on its own node, in parallel."""
    futures = {m: run_in_thread(loss_trial, m, thread_name=f"trial-{m}", **kwargs) for m in modes}
    return {m: f.result(timeout=300) for m, f in futures.items()}


def loss_table(trials: dict[str, dict[str, Any]]) -> Table:
    rows = [[m, MODES[m][2], t["acknowledged"], t["kept"], len(t["lost"]), len(t["unacknowledged_kept"])]
            for m, t in trials.items()]
    return Table(["mode", "persistence", "acknowledged", "after restart", "acknowledged lost",
                  "kept, never acknowledged"], rows,
                 title="Sequence-numbered writes across a kill -9 of redis-server (the OS keeps running)",
                 note="a process crash leaves the page cache alone: fsync decides only what survives an OS "
                      "crash or power loss")


def plot_loss(trials: dict[str, dict[str, Any]]) -> None:
    from .. import charts

    modes = list(trials)
    lost = [len(trials[m]["lost"]) for m in modes]
    pct = [100 * n / max(1, trials[m]["acknowledged"]) for m, n in zip(modes, lost)]
    fig, ax = charts.figure("Acknowledged writes lost to kill -9, by persistence mode",
                            xlabel="persistence mode", ylabel="acknowledged writes lost (%)")
    ax.bar(modes, pct, label="lost after restart")
    worst = max(modes, key=lambda m: len(trials[m]["lost"]))
    charts.finish(ax, summary=f"in this run: {', '.join(f'{m} {n}' for m, n in zip(modes, lost))} "
                  f"acknowledged writes lost (most: {worst})")


# -- fsync calls per policy, counted by strace --------------------------------------------------


def strace_available() -> bool:
    return shutil.which("strace") is not None


def count_fsyncs(node: Node, writes: int, *, settle_s: float = 1.2) -> int | None:
    """fsync + fdatasync calls by every thread of the node's redis-server while ``writes`` SETs
    are acknowledged (plus ``settle_s`` for a background fsync); None without strace or ptrace."""
    if not strace_available() or node.pid is None:
        return None
    proc = subprocess.Popen(["strace", "-c", "-f", "-e", "trace=fsync,fdatasync", "-p", str(node.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for _ in range(5):                                  # "strace: Process N attached with K threads"
        line = proc.stderr.readline()
        if "attached" in line or not line or "ptrace" in line or "rror" in line:
            break
    if "attached" not in line:                          # e.g. ptrace not permitted here
        proc.kill()
        proc.communicate()
        return None
    time.sleep(0.05)
    for i in range(writes):
        node.r.set(f"f:{i}", i)
    time.sleep(settle_s)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=30)[1]
    return sum(int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$",
                                                    err, flags=re.M))


# -- throughput per policy ----------------------------------------------------------------------


def throughput_trial(modes: tuple[str, ...] = ("none", "aof-no", "aof-everysec", "aof-always"), *,
                     seconds: float = 0.6, rounds: int = 3, fsync_writes: int = 300) -> dict[str, dict[str, Any]]:
    """Per mode, one node: acknowledged SETs per second from one client, ``seconds`` per mode in
    all, taken in ``rounds`` interleaved slices (so a burst of load elsewhere on the machine hits
    every mode alike), then fsync calls for ``fsync_writes`` writes (strace)."""
    nodes = {m: _node(f"tp-{m}", m) for m in modes}
    clients = {m: node.client(socket_timeout=10) for m, node in nodes.items()}
    out: dict[str, dict[str, Any]] = {m: {"writes": 0, "seconds": 0.0} for m in modes}
    try:
        for _ in range(rounds):
            for m, c in clients.items():
                n, t0 = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - t0) < seconds / rounds:
                    c.set(f"k:{n}", "x" * 100)
                    n += 1
                out[m]["writes"] += n
                out[m]["seconds"] += elapsed
        for m, node in nodes.items():
            out[m]["ops_per_s"] = out[m]["writes"] / out[m]["seconds"]
            out[m]["fsyncs"] = count_fsyncs(node, fsync_writes) if m != "none" else 0
            out[m]["fsync_writes"] = fsync_writes
    finally:
        for m, node in nodes.items():
            clients[m].close()
            node.stop()
    base = out[modes[0]]["ops_per_s"]
    for m in modes:
        out[m]["ratio"] = out[m]["ops_per_s"] / base
    return out


def throughput_table(tp: dict[str, dict[str, Any]]) -> Table:
    rows = [[m, round(t["ops_per_s"]), t["ratio"], "n/a (no strace)" if t["fsyncs"] is None else t["fsyncs"]]
            for m, t in tp.items()]
    first = next(iter(tp))
    n = next(iter(tp.values()))["fsync_writes"]
    return Table(["mode", "writes/s (1 client)", f"vs {first}", f"fsync calls for {n} writes"], rows,
                 title="One client's acknowledged writes per second, and the fsyncs behind them",
                 fmt={f"vs {first}": ".2f"})


def plot_throughput(tp: dict[str, dict[str, Any]]) -> None:
    from .. import charts

    modes = list(tp)
    fig, ax = charts.figure("Acknowledged writes per second by persistence mode (1 client)",
                            xlabel="persistence mode", ylabel="writes per second (ops/s)")
    ax.bar(modes, [tp[m]["ops_per_s"] for m in modes], label="1 client, sequential SETs")
    charts.finish(ax, summary="in this run, relative to " + modes[0] + ": "
                  + ", ".join(f"{m} {tp[m]['ratio']:.2f}x" for m in modes[1:]))


# -- restart time: RDB preamble vs plain AOF ----------------------------------------------------


def restart_trial(sizes: tuple[int, ...] = (40_000, 80_000, 160_000), repeats: int = 2) -> list[dict[str, Any]]:
    """For aof-use-rdb-preamble yes and no (one node each): DEBUG POPULATE each size, rewrite the
    AOF, then ``repeats`` times for each node in turn: kill -9 and restart until PING answers.
    Keeps the fastest of the repeats (the least disturbed by other load on the machine), with the
    loading time the server logs itself."""
    nodes = {p: _node(f"restart-{p}", "aof-everysec", **{"aof-use-rdb-preamble": p}) for p in ("yes", "no")}
    best: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for n in sizes:
            for node in nodes.values():
                c = node.client(socket_timeout=60)
                c.execute_command("DEBUG", "POPULATE", n)
                c.bgrewriteaof()
                wait_until(lambda n=node: _rewritten(n), 60, "the AOF rewrite", step=0.02)
                _aof_written(node)
                c.close()
            for _ in range(repeats):
                for preamble, node in nodes.items():          # alternate, so load spikes hit both
                    row = _timed_restart(node, preamble, n)
                    key = (preamble, n)
                    if key not in best or row["load_s"] < best[key]["load_s"]:
                        best[key] = row
    finally:
        for node in nodes.values():
            node.stop()
    return [best[p, n] for p in ("yes", "no") for n in sizes]


def _timed_restart(node: Node, preamble: str, n: int) -> dict[str, Any]:
    base = next((node.data_dir / "appendonlydir").glob("*.base.*"))
    head = base.read_bytes()[:5]
    node.kill()
    t0 = time.perf_counter()
    node.restart()
    seconds = time.perf_counter() - t0
    found = re.search(r"DB loaded from append only file: ([\d.]+) seconds", node.server.log_tail(40))
    return {"preamble": preamble, "keys": n, "loaded": int(node.r.dbsize()), "base_file": base.name,
            "base_bytes": base.stat().st_size, "head": head.decode(errors="replace"), "restart_s": seconds,
            "load_s": float(found.group(1)) if found else float("nan")}


def _rewritten(node: Node) -> bool:
    info = node.r.info("persistence")
    return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]


def restart_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["aof-use-rdb-preamble", "keys", "loaded", "base file", "holds", "MB", "loading (s)",
                  "restart (s)"],
                 [[r["preamble"], r["keys"], r["loaded"], r["base_file"],
                   "an RDB snapshot" if r["head"] == "REDIS" else "commands (RESP)", r["base_bytes"] / 1e6,
                   r["load_s"], r["restart_s"]] for r in rows],
                 title="kill -9, then restart until the data is loaded",
                 note="loading: the server's own figure from its log; restart: until PING answers, as a client sees it",
                 fmt={"MB": ".1f", "loading (s)": ".2f", "restart (s)": ".2f"})


def plot_restart(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("AOF loading time vs dataset size (the server's own figure)",
                            xlabel="keys (thousands)", ylabel="loading (s)")
    for preamble, label in (("yes", "RDB preamble + AOF tail"), ("no", "plain AOF (commands)")):
        pts = [(r["keys"] / 1000, r["load_s"]) for r in rows if r["preamble"] == preamble]
        ax.plot(*zip(*pts), marker="o", label=label)
    big = max(r["keys"] for r in rows)
    t = {r["preamble"]: r["load_s"] for r in rows if r["keys"] == big}
    charts.finish(ax, summary=f"in this run, at {big:,} keys the plain AOF took {t['no'] / t['yes']:.1f}x "
                  f"as long to load as the RDB preamble ({t['no']:.2f} s vs {t['yes']:.2f} s)")


# -- a truncated AOF ----------------------------------------------------------------------------


def truncated_aof_trial(writes: int = 100, cut_bytes: int = 5) -> dict[str, Any]:
    """aof-always, ``writes`` RPUSHes, kill -9, cut the last bytes off the AOF's incr file (a
    half-written last command), then restart: with aof-load-truncated no (refused), after
    redis-check-aof --fix, and with the default aof-load-truncated yes on a fresh copy."""
    node = _node("truncated", "aof-always", **{"aof-load-truncated": "no"})
    out: dict[str, Any] = {"writes": writes}
    try:
        for i in range(1, writes + 1):
            node.r.rpush("log", i)
        node.kill()
        aof_dir = node.data_dir / "appendonlydir"
        incr = next(aof_dir.glob("*.incr.aof"))
        data = incr.read_bytes()
        incr.write_bytes(data[:-cut_bytes])
        pristine = aof_dir.with_name("copy")
        shutil.copytree(aof_dir, pristine)
        try:
            node.restart()
            out["strict"] = "started"
        except ServerStartError as exc:
            out["strict"] = "refused to start"
            out["strict_log"] = next((line.split(" # ", 1)[-1] for line in exc.details.splitlines()
                                      if "aof-load-truncated" in line or "truncated" in line.lower()), "")
        checker = Path(str(node.server.binary)).with_name("redis-check-aof")
        manifest = next(aof_dir.glob("*.manifest"))
        if checker.exists():
            fix = subprocess.run([str(checker), "--fix", str(manifest)], input="y\n", capture_output=True,
                                 text=True, timeout=60)
            out["check_aof"] = [line for line in fix.stdout.splitlines() if line.strip()][-2:]
            node.restart()
            out["after_fix"] = int(node.r.llen("log"))
        else:
            out["check_aof"], out["after_fix"] = None, None
        node.server.kill()
        shutil.rmtree(aof_dir)
        shutil.copytree(pristine, aof_dir)
        node.server.config["aof-load-truncated"] = "yes"
        node.restart()
        out["tolerant"] = int(node.r.llen("log"))
        out["tolerant_log"] = next((line.split(" # ", 1)[-1] for line in node.server.log_tail(40).splitlines()
                                    if "truncat" in line.lower() or "short read" in line.lower()), "")
    finally:
        node.stop()
    return out


def truncated_table(t: dict[str, Any]) -> Table:
    rows = [["aof-load-truncated no", t["strict"], "-"],
            ["redis-check-aof --fix, then start", "started" if t["after_fix"] is not None else "no redis-check-aof",
             t["after_fix"]],
            ["aof-load-truncated yes (default)", "started", t["tolerant"]]]
    return Table(["restart with", "server", f"entries of {t['writes']}"], rows,
                 title=f"An AOF whose last command was cut short ({t['writes']} acknowledged RPUSHes)")


# -- WAIT and WAITAOF ---------------------------------------------------------------------------


def acknowledgement_trial(key: str = "order:1") -> dict[str, Any]:
    """A primary and one replica, both with AOF everysec. Replies of durable_set / WAIT with the
    replica healthy and frozen (SIGSTOP), a WAITAOF from a connection that never wrote, and
    whether a timed-out WAIT undid the write."""
    lab = Replicated(1, persistence="aof-everysec", name="acks").start()
    out: dict[str, Any] = {}
    try:
        p, replica = lab.primary, lab.replicas[0]
        writer = p.client(socket_timeout=5)
        out["healthy"] = durable_set(writer, key, "paid", replicas=1, timeout_ms=5000)
        replica.pause()                                              # SIGSTOP
        try:
            out["frozen"] = durable_set(writer, key, "shipped", replicas=1, timeout_ms=2500)
            with writer.pipeline(transaction=False) as pipe:         # WAIT on the writing connection
                pipe.set(key, "delivered")
                pipe.wait(1, 300)
                out["wait_frozen"] = pipe.execute()[1]
            fresh = p.client()
            out["fresh_waitaof"] = tuple(fresh.execute_command("WAITAOF", 1, 1, 300))
            out["fresh_wait"] = fresh.wait(1, 300)
            fresh.close()
            out["value_on_primary"] = p.r.get(key)
        finally:
            replica.resume()
        wait_until(lambda: replica.r.get(key) == "delivered", 10, "the replica to catch up", step=0.01)
        out["after_resume"] = durable_set(writer, key, "delivered", replicas=1, timeout_ms=5000)
        writer.close()
    finally:
        lab.stop()
    return out


def acknowledgement_table(a: dict[str, Any]) -> Table:
    same = "SET + WAITAOF 1 1 (same connection)"
    return Table(["call", "replica", "reply", "what it says"], [
        [same, "healthy", str(a["healthy"]), "fsynced by the primary's AOF and the replica's"],
        [same, "frozen", str(a["frozen"]), "fsynced locally; the replica has not confirmed"],
        ["SET + WAIT 1 (same connection)", "frozen", str(a["wait_frozen"]), "no replica has it yet"],
        ["WAITAOF 1 1 (a new connection)", "frozen", str(a["fresh_waitaof"]), "nothing: that connection wrote nothing"],
        ["WAIT 1 (a new connection)", "frozen", str(a["fresh_wait"]), "nothing, for the same reason"],
        ["GET on the primary afterwards", "frozen", repr(a["value_on_primary"]), "a timed-out WAIT undoes nothing"],
        [same, "resumed", str(a["after_resume"]), "both again"],
    ], title="What the acknowledgements say")


def failover_trial(key: str = "order:2") -> dict[str, Any]:
    """A primary and one replica. A write confirmed by WAIT 1; the replica's link is cut; a second
    write acknowledged (WAIT says 0); the primary is killed (kill -9) and the replica promoted.
    Returns both WAIT replies and what the new primary has."""
    lab = Replicated(1, name="failover").start()
    out: dict[str, Any] = {}
    try:
        old, replica = lab.primary, lab.replicas[0]
        c = old.client(socket_timeout=5)
        for value, step in (("paid", "confirmed"), ("refunded", "partitioned")):
            if step == "partitioned":
                lab.link(replica).partition()            # the replica stops hearing the primary
            with c.pipeline(transaction=False) as pipe:
                pipe.set(key, value)
                pipe.wait(1, 300)
                ok, out[f"wait_{step}"] = pipe.execute()
            out[f"acked_{step}"] = ok is True
        c.close()
        old.kill()
        out["after_failover"] = lab.promote(replica).r.get(key)
    finally:
        lab.stop()
    return out


# -- modelling: a delete killed half-way ---------------------------------------------------------


def naive_delete(r: redis.Redis, users: Users, uid: str, hook: Any = None) -> None:
    """The delete most people write first: three commands, three round trips."""
    email = r.hget(users.keys(uid, "")[0], "email")
    record, by_email, by_age = users.keys(uid, str(email))
    r.delete(record)
    if hook:
        hook()
    r.delete(by_email)
    r.zrem(by_age, uid)


def naive_delete_worker(ctx: Any, prefix: str, uid: str) -> None:
    """An app-server process deleting user ``uid`` the naive way; it stops after deleting the
    record and records "record deleted" so the parent can kill it there."""
    def stall() -> None:
        ctx.record("record deleted")
        time.sleep(60)   # killed here: the index entries are never removed

    r = ctx.client(0)
    naive_delete(r, Users(r, prefix), uid, hook=stall)


def kill_mid_delete(server: Any, prefix: str, uid: str) -> int:
    """Run :func:`naive_delete_worker` in its own process, kill -9 it between its steps; exit code."""
    app = Workers(naive_delete_worker, 1, nodes=[server], args=(prefix, uid)).start()
    try:
        app.wait_for("record deleted", timeout=30)
        app.kill("w1")
    finally:
        app.stop()
    return app.exitcodes["w1"]


def seed_users(users: Users, n: int, start: int = 1) -> list[str]:
    """Add users start..start+n-1 (ids as strings), emails u<id>@example.com, ages 18-77."""
    ids = [str(i) for i in range(start, start + n)]
    for uid in ids:
        users.add(uid, f"u{uid}@example.com", 18 + int(uid) % 60, name=f"user {uid}")
    return ids


def dangling(r: redis.Redis, users: Users) -> dict[str, list[str]]:
    """Index entries whose record is gone: {"email": [...emails], "age": [...ids]}."""
    prefix = users.prefix
    emails = sorted(k.split(":email:", 1)[1] for k in r.scan_iter(f"{prefix}:email:*", count=1000))
    ids = [cast(str, r.get(f"{prefix}:email:{e}")) for e in emails]
    by_age = cast(list, r.zrange(f"{prefix}s:by:age", 0, -1))
    with r.pipeline(transaction=False) as p:
        for uid in ids + by_age:
            p.exists(f"{prefix}:{uid}")
        exists = p.execute()
    return {"email": [e for e, ok in zip(emails, exists[:len(ids)]) if not ok],
            "age": sorted((u for u, ok in zip(by_age, exists[len(ids):]) if not ok), key=int)}


def delete_concurrently(users: Users, ids: list[str], threads: int = 4) -> int:
    """Delete ``ids`` with :meth:`Users.delete` from ``threads`` threads; how many were deleted."""
    chunks = [ids[i::threads] for i in range(threads)]
    futures = [run_in_thread(lambda ch: sum(users.delete(u) for u in ch), ch) for ch in chunks]
    return sum(f.result(timeout=120) for f in futures)


# -- eviction: noeviction vs allkeys-lru --------------------------------------------------------


def eviction_trial(policy: str, *, maxmemory: str = "4mb", records: int = 20_000, batch: int = 500) -> dict[str, Any]:
    """Write ``records`` ~200-byte records (pipelined batches) into a node limited to ``maxmemory``
    under ``policy``; count acknowledged, refused (OOM) and later missing records."""
    node = _node(f"evict-{policy}", "none", maxmemory=maxmemory, **{"maxmemory-policy": policy})
    acked: list[int] = []
    refused = 0
    first_error = ""
    try:
        c = node.client(socket_timeout=10)
        for start in range(0, records, batch):
            with c.pipeline(transaction=False) as p:
                for i in range(start, start + batch):
                    p.hset(f"rec:{i}", mapping={"id": i, "body": "x" * 180})
                replies = p.execute(raise_on_error=False)
            for i, rep in zip(range(start, start + batch), replies):
                if isinstance(rep, Exception):
                    refused += 1
                    first_error = first_error or f"{type(rep).__name__}: {rep}"
                else:
                    acked.append(i)
        c.config_set("maxmemory", 0)     # stop evicting: the count below must not evict more
        evicted = int(cast(dict, c.info("stats"))["evicted_keys"])
        with c.pipeline(transaction=False) as p:
            for i in acked:
                p.exists(f"rec:{i}")
            present = sum(p.execute())
        c.close()
    finally:
        node.stop()
    return {"policy": policy, "written": records, "acknowledged": len(acked), "refused": refused,
            "missing": len(acked) - present, "evicted_keys": evicted, "error": first_error}


def eviction_table(trials: list[dict[str, Any]]) -> Table:
    return Table(["maxmemory-policy", "writes", "acknowledged", "refused (OOM)", "acknowledged, now missing",
                  "evicted_keys"],
                 [[t["policy"], t["written"], t["acknowledged"], t["refused"], t["missing"], t["evicted_keys"]]
                  for t in trials], title="The same writes against a full memory")


def failover_table(f: dict[str, Any]) -> Table:
    return Table(["write", "replica link", "reply to SET", "WAIT 1 on that connection", "after the failover"],
                 [["SET order:2 paid", "up", "OK" if f["acked_confirmed"] else "error", f["wait_confirmed"], ""],
                  ["SET order:2 refunded", "cut", "OK" if f["acked_partitioned"] else "error", f["wait_partitioned"],
                   ""],
                  ["GET order:2 on the promoted replica", "", "", "", repr(f["after_failover"])]],
                 title="kill -9 of the primary, then the replica promoted")
