"""Scenarios for notebooks/16-pubsub.ipynb: an outage measured, a double delivery, a slow
subscriber cut off by the server, sharded pub/sub on a real cluster, and the same outage replayed
with a stream.

Each helper is one line in the notebook and returns plain data or a view; the pattern itself
(:class:`~redistutor.patterns.pubsub.SequencedChannel`, :class:`~redistutor.patterns.pubsub.GapDetector`)
lives in ``redistutor/patterns/pubsub.py``.

What a subscriber received is counted by the toolkit's :class:`~redistutor.sink.Sink`, a SQLite
file the subscriber process appends to (one row per message handled, committed before the next
is read); the publisher's own record is what ``PUBLISH`` returned. Every fault happens at a known
point of the sequence, and every wait is for a state (the sink's row count, ``PUBSUB NUMSUB``),
never for a guessed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from .. import lab
from ..patterns.pubsub import GapDetector, SequencedChannel, parse, read_messages
from ..race import wait_until
from ..sink import CommandStats, Sink, config, kill_client, standby, takeover, xread_entries
from ..tables import Table

__all__ = [
    "Sink", "buffer_chart", "confirmed", "cut_table", "delivery_table", "kill_client", "outage_chart",
    "outage_run", "outage_table", "pattern_cost", "pattern_cost_chart", "sent_table", "shard_table",
    "sharded_tour", "slow_subscriber", "subscribed_connection_commands", "subscriber_worker",
    "wait_subscribed", "wait_until", "xread_entries",
]


def numsub(r: redis.Redis, channel: str) -> int:
    """``PUBSUB NUMSUB channel``: how many clients the server has subscribed to it right now."""
    return int(r.pubsub_numsub(channel)[0][1])


def wait_subscribed(r: redis.Redis, channel: str, n: int = 1, timeout: float = 10.0) -> None:
    """Until the server counts ``n`` subscribers of ``channel`` (a subscription is only live once
    the server has processed SUBSCRIBE, not when the client sent it)."""
    wait_until(lambda: numsub(r, channel) == n, timeout, f"{n} subscriber(s) of {channel}")


def confirmed(pubsub: Any, n: int = 1, timeout: float = 5.0) -> None:
    """Read ``n`` (p|s)subscribe confirmations: once they arrive, the server has subscribed us."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < n:
        msg = pubsub.get_message(timeout=0.2)
        if msg is not None and msg["type"] in ("subscribe", "psubscribe", "ssubscribe"):
            got += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got} of {n} subscriptions confirmed after {timeout:g} s")


def sent_table(sent: list[tuple[int, int]], detector: GapDetector) -> Table:
    """The publisher's view, run by run of equal PUBLISH results, next to the detector's verdict."""
    rows: list[list[Any]] = []
    for seq, receivers in sent:
        if rows and rows[-1][2] == receivers and rows[-1][1] == seq - 1:
            rows[-1][1] = seq
        else:
            rows.append([seq, seq, receivers])
    missed = detector.missed
    return Table(["messages", "PUBLISH returned", "handled by the subscriber"],
                 [[f"{a}-{b}", n, sum(1 for s in range(a, b + 1) if s <= detector.last and s not in missed)]
                  for a, b, n in rows],
                 title="what the publisher was told, what the subscriber handled",
                 note=f"gap detector: missed {_ranges(missed) or 'nothing'}, last seen {detector.last}, "
                      f"duplicates {detector.duplicates}")


def _ranges(seqs: list[int]) -> str:
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


# -- the subscriber process --------------------------------------------------------------------------


def subscriber_worker(ctx: Any, mode: str, name: str, db_path: str, run: str) -> None:
    """A subscriber in its own OS process (for ``lab.Workers``), appending what it handles to the sink.

    ``mode="pubsub"``: SUBSCRIBE ``name`` and record each message's sequence number.
    ``mode="stream"``: XREAD ``name`` from the last id in the sink (``0-0`` on a first start), and
    record each entry with its id: the position to resume from is stored with the work it marks.
    Worker w1 starts at once; w2 is a standby (:func:`~redistutor.sink.standby`) that goes only
    once the notebook calls ``takeover`` (so the notebook need not wait for a process to start in
    the middle of a scenario). Runs until killed.
    """
    r = ctx.client(0)   # fail-fast: no silent reconnect in the worker
    if ctx.index > 1:
        standby(r, f"{name}:takeover", consume=True, timeout=300)
        ctx.record("takeover", name)
    sink = Sink(db_path)
    if mode == "pubsub":
        p = r.pubsub()
        p.subscribe(name)
        ctx.record("subscribed", name)
        while True:
            msg = p.get_message(timeout=0.5)
            if msg and msg["type"] == "message":
                sink.record(str(parse(msg["data"])[0]), ctx.name, run=run)
    else:
        last = (sink.last(run) or ("", "", "0-0"))[2]        # where a restarted consumer resumes
        ctx.record("resumed", f"from {last}")
        while True:
            for entry_id, fields in xread_entries(r.xread({name: last}, count=100, block=500)):
                sink.record(fields["seq"], ctx.name, run=run, info=entry_id)
                last = entry_id


# -- the outage, measured ----------------------------------------------------------------------------


def _seqs(sink: Sink, run: str) -> list[int]:
    """The sequence numbers the subscriber handled in ``run``, in order."""
    return [int(i) for i in sink.ids(run)]



def outage_run(server: Any, sink: Sink, name: str, *, mode: str = "pubsub", total: int = 100,
               down: tuple[int, int] = (31, 70)) -> dict[str, Any]:
    """Publish ``total`` numbered messages to one subscriber process; ``kill -9`` it before
    message ``down[0]``; after ``down[1]`` a standby process (w2, started with w1 but not connected
    until then) takes over, as a supervisor's restart would.

    Every step waits for a state: the sink holding what was sent so far before the kill, the server
    counting no subscriber before the outage's messages, one again before the rest. With
    ``mode="stream"`` the messages are XADDed to the stream ``name`` and the consumer resumes from
    the last id it recorded. Returns what was sent (with PUBLISH's return value, or the entry id),
    what the sink holds, the subscriber counts seen at each phase, and the workers' exit codes.
    """
    r = server.client()
    run = f"{mode}:{name}"
    sent: list[tuple[int, Any]] = []
    phases: list[tuple[str, int]] = []

    def send(seq: int) -> None:
        if mode == "pubsub":
            sent.append((seq, r.publish(name, f"{seq}:order {seq}")))
        else:
            sent.append((seq, r.xadd(name, {"seq": seq, "body": f"order {seq}"})))

    workers = lab.Workers(subscriber_worker, 2, nodes=[server], args=(mode, name, sink.path, run)).start()
    if mode == "pubsub":
        wait_subscribed(r, name, 1, timeout=30)
    phases.append(("subscriber up", numsub(r, name)))
    for seq in range(1, down[0]):
        send(seq)
    wait_until(lambda: sink.count(run) == down[0] - 1, 30, "the subscriber to handle what was sent")
    workers.kill("w1")                                 # kill -9, between two messages
    if mode == "pubsub":
        wait_subscribed(r, name, 0)                    # the server has noticed the closed socket
    phases.append(("killed (kill -9)", numsub(r, name)))
    for seq in range(down[0], down[1] + 1):
        send(seq)
    takeover(r, f"{name}:takeover")                    # the standby process (w2) connects now
    if mode == "pubsub":
        wait_subscribed(r, name, 1, timeout=30)
    phases.append(("restarted", numsub(r, name)))
    for seq in range(down[1] + 1, total + 1):
        send(seq)
    wait_until(lambda: max(_seqs(sink, run), default=0) == total, 30, "the last message to be handled")
    workers.stop()
    r.close()
    received = _seqs(sink, run)
    return {"mode": mode, "sent": sent, "received": received, "phases": phases, "down": down,
            "total": total, "lost": sorted(set(range(1, total + 1)) - set(received)),
            "duplicates": len(received) - len(set(received)),
            "exit_codes": [workers.exitcodes["w1"], workers.exitcodes["w2"]]}


def outage_table(run: dict[str, Any]) -> Table:
    """One row per phase: which messages, what the publisher was told, what the subscriber got."""
    lo, hi = run["down"]
    got = set(run["received"])
    rows = []
    for label, seqs in (("before the kill", range(1, lo)), ("subscriber down", range(lo, hi + 1)),
                        ("after the restart", range(hi + 1, run["total"] + 1))):
        told = [v for s, v in run["sent"] if s in seqs]
        told_text = (f"receivers: {sorted(set(told))}" if run["mode"] == "pubsub"
                     else f"stored as {told[0]} .. {told[-1]}")
        rows.append([label, f"{seqs[0]}-{seqs[-1]}", len(seqs), told_text, sum(s in got for s in seqs)])
    what = "PUBLISH returned" if run["mode"] == "pubsub" else "XADD returned"
    return Table(["phase", "messages", "sent", what, "handled by the subscriber"], rows,
                 title=f"{run['mode']}: {run['total']} messages, the subscriber killed for {hi - lo + 1}",
                 note=f"lost: {len(run['lost'])} of {run['total']} (counted by the SQLite sink); "
                      f"duplicates: {run['duplicates']}" + ("; PUBSUB NUMSUB: " + ", ".join(
                          f"{p} {n}" for p, n in run["phases"]) if run["mode"] == "pubsub" else ""))


def outage_chart(runs: list[dict[str, Any]]):
    """Messages handled (cumulative) against the sequence number, the outage shaded."""
    from .. import charts

    fig, ax = charts.figure("Messages handled across a subscriber outage",
                            xlabel="message sequence number", ylabel="handled so far (messages)")
    lo, hi = runs[0]["down"]
    ax.axvspan(lo - 0.5, hi + 0.5, color="#999999", alpha=0.2, label="subscriber down (kill -9)")
    ax.plot([1, runs[0]["total"]], [1, runs[0]["total"]], color="#555555", alpha=0.35, linewidth=6,
            label="published")
    for i, run in enumerate(runs):
        got = set(run["received"])
        xs = list(range(1, run["total"] + 1))
        ys, n = [], 0
        for s in xs:
            n += s in got
            ys.append(n)
        ax.step(xs, ys, where="mid", label=f"{run['mode']} ({len(run['lost'])} lost)",
                color=charts.PALETTE[i], linewidth=2)
    charts.finish(ax, summary="in this run " + "; ".join(
        f"{r['mode']} handled {len(set(r['received']))} of {r['total']}, lost {len(r['lost'])}" for r in runs))
    return fig


# -- channels and patterns ---------------------------------------------------------------------------


def delivery_table(messages: list[dict]) -> Table:
    """The messages one client received: type, pattern, channel, data."""
    return Table(["type", "pattern", "channel", "data"],
                 [[m["type"], m.get("pattern") or "", m["channel"], m["data"]] for m in messages],
                 title="what the client received")


def subscribed_connection_commands(server: Any, channel: str) -> dict[str, str]:
    """SUBSCRIBE on a raw RESP2 and a raw RESP3 connection, then GET on the same connection:
    what the server answers each (the reply, or the error text)."""
    out = {}
    for proto in (2, 3):
        conn = redis.Connection(host=server.host, port=server.port, password=server.password,
                                protocol=proto, decode_responses=True)
        try:
            conn.connect()
            conn.send_command("SUBSCRIBE", channel)
            conn.read_response(push_request=proto == 3)     # the subscribe confirmation (a push in RESP3)
            conn.send_command("GET", f"{channel}:no-such-key")
            try:
                out[f"RESP{proto}"] = f"reply: {conn.read_response()!r}"
            except redis.exceptions.ResponseError as exc:
                out[f"RESP{proto}"] = f"error: {exc}"
        finally:
            conn.disconnect()
    return out


def pattern_cost(server: Any, channel: str, *, counts: tuple[int, ...] = (0, 250, 500, 1000, 2000),
                 publishes: int = 1000) -> list[dict[str, Any]]:
    """The server's own CPU time per PUBLISH (``INFO commandstats`` usec / calls, deltas) while one
    client holds ``n`` pattern subscriptions that never match ``channel``."""
    r = server.client()
    p = server.client().pubsub()
    held, out = 0, []
    base = r.pubsub_numpat()
    try:
        for n in counts:
            if n > held:
                p.psubscribe(*[server.key(f"never.{i}.*") for i in range(held, n)])
                confirmed(p, n - held, timeout=30)
                held = n
            with CommandStats(r) as cs:
                pipe = r.pipeline(transaction=False)
                for _ in range(publishes):
                    pipe.publish(channel, "x")
                returned = set(pipe.execute())
            out.append({"patterns": n, "numpat": r.pubsub_numpat() - base, "returned": returned,
                        "calls": cs.calls.get("publish", 0), "usec_per_call": cs.usec_per_call("publish")})
    finally:
        p.close()
        r.close()
    return out


def pattern_cost_chart(points: list[dict[str, Any]]):
    from .. import charts

    fig, ax = charts.figure("Server time per PUBLISH vs pattern subscriptions that do not match",
                            xlabel="pattern subscriptions on the server (count)",
                            ylabel="PUBLISH, server time (µs per call)")
    ax.plot([p["patterns"] for p in points], [p["usec_per_call"] for p in points], marker="o",
            color=charts.NEUTRAL, label="INFO commandstats")
    first, last = points[0], points[-1]
    charts.finish(ax, summary=f"in this run a PUBLISH cost {first['usec_per_call']:.2f} µs of server time "
                  f"with {first['patterns']} patterns and {last['usec_per_call']:.1f} µs with {last['patterns']}, "
                  f"none of which matched")
    return fig


# -- a slow subscriber and the output buffer limit -----------------------------------------------------


def _client_row(r: redis.Redis, name: str) -> dict | None:
    for c in r.client_list(_type="pubsub"):
        if c.get("name") == name:
            return c
    return None


def slow_subscriber(server: Any, channel: str, *, limit: str = "pubsub 1mb 0 0", payload_bytes: int = 16_000,
                    batch: int = 16, max_batches: int = 400, after: int = 5) -> dict[str, Any]:
    """Two subscribers of one channel: ``fast`` reads every batch, ``slow`` reads nothing (a
    stalled consumer). Batches of numbered messages are published until the server closes the slow
    one for exceeding ``client-output-buffer-limit`` (set with CONFIG SET, restored afterwards);
    ``CLIENT LIST`` omem of both is sampled after every batch. Then ``after`` more messages, and
    the slow subscriber finally reads: what was still in its socket, then (redis-py reconnects and
    resubscribes without a word) the ``after`` messages, with its gap detector's verdict.
    """
    r = server.client()
    feed = SequencedChannel(r, channel)
    slow = server.client(client_name="slow-sub").pubsub()
    fast = server.client(client_name="fast-sub").pubsub()
    samples: list[tuple[float, int, int]] = []
    before = int(r.info("stats")["client_output_buffer_limit_disconnections"])
    fast_detector, slow_detector = GapDetector(), GapDetector()
    log_line = ""
    try:
        with config(r, {"client-output-buffer-limit": limit}):
            slow.subscribe(channel)
            fast.subscribe(channel)
            wait_subscribed(r, channel, 2)
            payload = "x" * payload_bytes
            last_row = None
            for _ in range(max_batches):
                for _ in range(batch):
                    seq, _receivers = feed.publish(payload)
                while fast_detector.last < seq:              # the reader catches up before we look
                    caught = read_messages(fast, wait=5.0, limit=seq - fast_detector.last)
                    if not caught:
                        raise TimeoutError(f"the reading subscriber stopped at {fast_detector.last} of {seq}")
                    for m in caught:
                        fast_detector.feed(m["data"])
                row, fast_row = _client_row(r, "slow-sub"), _client_row(r, "fast-sub")
                samples.append((seq * (payload_bytes + 8) / 1e6, int(row["omem"]) if row else -1,
                                int(fast_row["omem"]) if fast_row else -1))
                if row is None:
                    break
                last_row = row
            cut_at = seq
            wait_until(lambda: numsub(r, channel) == 1, 10, "the slow subscriber to be gone")
            numsub_after_cut = numsub(r, channel)
            disconnections = int(r.info("stats")["client_output_buffer_limit_disconnections"]) - before
            tail = getattr(server, "log_tail", None)
            if tail:
                log_line = next((ln for ln in tail(20).splitlines() if "output buffer limits" in ln), "")
            handled_before = [parse(m["data"])[0] for m in read_messages(slow, wait=0.3)]   # reconnects here
            wait_subscribed(r, channel, 2)
            for _ in range(after):
                feed.publish("after the cut")
            for seq_ in handled_before:
                slow_detector.feed(f"{seq_}:")
            for m in read_messages(slow, wait=0.3):
                slow_detector.feed(m["data"])
            for m in read_messages(fast, wait=0.3):
                fast_detector.feed(m["data"])
    finally:
        slow.close()
        fast.close()
    r.close()
    return {"samples": samples, "limit": limit, "cut_at": cut_at, "total": cut_at + after,
            "last_omem": int(last_row["omem"]) if last_row else 0, "disconnections": disconnections,
            "numsub_after_cut": numsub_after_cut, "slow_handled_before_cut": handled_before,
            "slow_missed": slow_detector.missed, "slow_last": slow_detector.last,
            "fast_missed": fast_detector.missed, "fast_last": fast_detector.last, "log_line": log_line,
            "hard_limit": _hard_limit_bytes(limit)}


def cut_table(run: dict[str, Any]) -> Table:
    """The server's own account of the cut: INFO stats, CLIENT LIST, PUBSUB NUMSUB, its log."""
    import re

    line = run["log_line"]
    omem = re.search(r"omem=(\d+)", line)
    rows = [
        ["INFO stats client_output_buffer_limit_disconnections (increase)", run["disconnections"]],
        ["CLIENT LIST omem of the stalled subscriber, last sample before the cut (bytes)", run["last_omem"]],
        ["omem when the server closed it, from the server's log (bytes)", int(omem.group(1)) if omem else "(no log)"],
        ["the hard limit (bytes)", run["hard_limit"]],
        ["PUBSUB NUMSUB right after the cut (of 2)", run["numsub_after_cut"]],
        ["stalled subscriber: messages it read, all from before the cut", len(run["slow_handled_before_cut"])],
        ["stalled subscriber: missed, as its gap detector reports after resubscribing", len(run["slow_missed"])],
        ["reading subscriber: missed", len(run["fast_missed"])],
    ]
    said = line[line.find("scheduled"):] if "scheduled" in line else ""
    return Table(["what", "value"], rows, title="the server's own account of the cut",
                 note=f"server log: Client name=slow-sub ... {said}" if said else "")


def _hard_limit_bytes(limit: str) -> int:
    value = limit.split()[1].lower()
    units = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}
    for unit in ("kb", "mb", "gb", "k", "m", "g"):
        if value.endswith(unit):
            return int(value[: -len(unit)]) * units[unit]
    return int(value)


def buffer_chart(run: dict[str, Any]):
    """The slow and the fast subscriber's output buffer (CLIENT LIST omem) as the publisher sends."""
    from .. import charts

    fig, ax = charts.figure("Output buffers of a stalled and a reading subscriber",
                            xlabel="published so far (MB)", ylabel="output buffer, omem (KB)")
    mb = [s[0] for s in run["samples"]]
    alive = [(x, s / 1024) for x, s, _ in run["samples"] if s >= 0]
    ax.plot([x for x, _ in alive], [y for _, y in alive], marker="o", markersize=3, color=charts.BAD,
            label="stalled subscriber")
    ax.plot(mb, [f / 1024 for _, _, f in run["samples"]], color=charts.OK, label="reading subscriber")
    ax.axhline(run["hard_limit"] / 1024, linestyle="--", color="#555555", label="hard limit")
    if len(alive) < len(mb):
        ax.axvline(mb[len(alive)], linestyle=":", color=charts.BAD, label="closed by the server")
    charts.finish(ax, summary=(
        f"in this run the stalled subscriber's omem stayed 0 until about {_first_positive(run):.1f} MB "
        f"had been published (the kernel's socket buffers took the rest), reached "
        f"{run['last_omem'] / 1024:.0f} KB, and the server closed it at message {run['cut_at']}"))
    return fig


def _first_positive(run: dict[str, Any]) -> float:
    for x, s, _ in run["samples"]:
        if s > 0:
            return x
    return run["samples"][-1][0]


# -- sharded pub/sub on a real cluster -----------------------------------------------------------------


def _bus(node_client: redis.Redis) -> dict[str, int]:
    info = node_client.cluster("info")
    return {k: int(info.get(f"cluster_stats_messages_{k}", 0))
            for k in ("publish_sent", "publish_received", "publishshard_sent", "publishshard_received")}


def _sharded_messages(ps: Any, wait: float = 0.3) -> list[dict]:
    out = []
    while (msg := ps.get_sharded_message(timeout=wait)) is not None:
        if msg["type"] == "smessage":
            out.append(msg)
    return out


def _collect(read: Callable[[], list], n: int, timeout: float = 10.0) -> list:
    """Read until ``n`` messages arrived, or nothing more came for ``timeout`` seconds."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        more = read()
        if more:
            got += more
            deadline = time.monotonic() + timeout
    return got


def sharded_tour(cluster: Any, channel: str, *, messages: int = 100) -> dict[str, Any]:
    """SSUBSCRIBE/SPUBLISH on ``channel`` against classic SUBSCRIBE/PUBLISH, node by node.

    A cluster client SSUBSCRIBEs (it connects to the slot's owner) and SPUBLISHes (routed there);
    every node is then asked ``PUBSUB SHARDCHANNELS`` / ``SHARDNUMSUB``; a plain client to a
    master that does not own the slot tries ``SPUBLISH`` (MOVED). Then ``messages`` classic
    PUBLISHes on m1 to a subscriber connected to m3, and ``messages`` SPUBLISHes, with every
    node's cluster-bus counters (``CLUSTER INFO``) before and after each series.
    """
    nodes = {n.name: n.r for n in cluster}
    slot, owner = cluster.keyslot(channel), cluster.owner(channel)
    ps = cluster.rc.pubsub()
    ps.ssubscribe(channel)
    wait_until(lambda: owner.r.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1, 10, "SSUBSCRIBE")
    spublished = cluster.rc.spublish(channel, "1:hello shard")
    got = _sharded_messages(ps)
    per_node = {name: {"role": cluster.role(name), "owns": c is owner.r,
                       "shardchannels": c.execute_command("PUBSUB", "SHARDCHANNELS"),
                       "shardnumsub": int(c.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])}
                for name, c in nodes.items()}
    other = next(name for name in ("m1", "m2", "m3") if nodes[name] is not owner.r)
    try:
        nodes[other].execute_command("SPUBLISH", channel, "2:to the wrong node")
        moved = None
    except redis.exceptions.ResponseError as exc:   # MovedError: "<slot> host:port"
        moved = exc
    classic = cluster["m3"].client().pubsub()      # a classic subscriber on m3, the publisher on m1
    classic.subscribe(channel)
    wait_until(lambda: numsub(nodes["m3"], channel) == 1, 10, "SUBSCRIBE")
    bus0 = {n: _bus(c) for n, c in nodes.items()}
    classic_returns = [nodes["m1"].publish(channel, f"{i}:classic") for i in range(1, messages + 1)]
    classic_got = _collect(lambda: read_messages(classic, wait=0.3), messages)   # relayed by m3
    bus1 = {n: _bus(c) for n, c in nodes.items()}
    shard_returns = [cluster.rc.spublish(channel, f"{i}:sharded") for i in range(1, messages + 1)]
    shard_got = _collect(lambda: _sharded_messages(ps), messages)
    bus2 = {n: _bus(c) for n, c in nodes.items()}
    classic.close()
    ps.close()

    def delta(a: dict, b: dict, kind: str) -> dict[str, int]:
        return {n: b[n][f"publish{kind}_received"] - a[n][f"publish{kind}_received"] for n in nodes}

    return {"slot": slot, "owner": owner.name, "other": other, "spublished": spublished, "got": got,
            "per_node": per_node, "moved": moved, "classic_returns": classic_returns,
            "classic_got": len(classic_got), "shard_returns": shard_returns, "shard_got": len(shard_got),
            "messages": messages, "bus_classic": delta(bus0, bus1, ""), "bus_shard": delta(bus1, bus2, "shard"),
            "bus_classic_sent": bus1["m1"]["publish_sent"] - bus0["m1"]["publish_sent"],
            "bus_shard_sent": sum(bus2[n]["publishshard_sent"] - bus1[n]["publishshard_sent"] for n in nodes)}


def shard_table(tour: dict[str, Any]) -> Table:
    n = tour["messages"]
    rows = [[name, v["role"], "yes" if v["owns"] else "", ", ".join(v["shardchannels"]) or "(none)",
             v["shardnumsub"], tour["bus_classic"][name], tour["bus_shard"][name]]
            for name, v in tour["per_node"].items()]
    return Table(["node", "role", f"owns slot {tour['slot']}", "PUBSUB SHARDCHANNELS", "SHARDNUMSUB",
                  f"bus msgs in: {n} PUBLISH", f"bus msgs in: {n} SPUBLISH"],
                 rows, title="one channel, asked of every node",
                 note=f"SPUBLISH sent to {tour['other']} (not the owner): {type(tour['moved']).__name__}; "
                      f"PUBLISH on m1 returned {sorted(set(tour['classic_returns']))} while the subscriber "
                      f"on m3 received {tour['classic_got']} of {n}")
