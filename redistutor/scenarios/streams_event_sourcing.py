"""The experiments of notebooks/15-streams-event-sourcing.ipynb, each behind a one-line helper.

The pattern (:class:`EventStore`, :func:`fold`, :func:`apply_event`) lives in
:mod:`redistutor.patterns.streams_event_sourcing`; this module holds what the notebook does *with*
it: generated account histories and their independent balance, the two-writer race, snapshots,
consumer groups, the projector process killed with ``kill -9``, restarts with and without AOF, and
replay speed. Every helper returns plain data or a :class:`~redistutor.Table`.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import redis

from ..patterns.streams_event_sourcing import (
    EventStore,
    apply_event,
    apply_event_naive,
    fold,
    project,
    take_snapshot,
    withdraw,
)
from ..race import PausePoint, run_in_thread
from ..sink import xread_entries
from ..tables import Table

__all__ = [
    "StopBeforeCheckpoint", "append_all", "conflict_race", "durability_table", "durability_trial",
    "expected_balance", "generate_events", "groups_table", "groups_trial", "plot_balance",
    "plot_replay_speed", "projector_crash", "projector_table", "projector_worker", "race_table",
    "replay_speed", "snapshot_table", "snapshot_trial", "view_state",
]


# -- account histories ------------------------------------------------------------------------------

def generate_events(n: int, *, seed: int = 15) -> list[dict[str, Any]]:
    """``n`` deposits and withdrawals (a seeded RNG); a withdrawal never exceeds the balance."""
    rng, balance, out = random.Random(seed), 0, []
    for _ in range(n):
        amount = rng.randrange(10, 500)
        if rng.random() < 0.45 and balance >= amount:
            out.append({"type": "withdrawn", "amount": amount})
            balance -= amount
        else:
            out.append({"type": "deposited", "amount": amount})
            balance += amount
    return out


def expected_balance(events: list[dict[str, Any]]) -> int:
    """The balance computed in Python from the generated list: no Redis, no :func:`fold`."""
    deposits = sum(e["amount"] for e in events if e["type"] == "deposited")
    withdrawals = sum(e["amount"] for e in events if e["type"] == "withdrawn")
    return deposits - withdrawals


def append_all(r: redis.Redis, key: str, events: list[dict[str, Any]], *, batch: int = 500) -> list[str]:
    """XADD every event in order (pipelined, ``batch`` per round trip); returns the new ids."""
    ids: list[str] = []
    for i in range(0, len(events), batch):
        with r.pipeline(transaction=False) as p:
            for e in events[i:i + batch]:
                p.xadd(key, e)
            ids += p.execute()
    return ids


# -- two writers, one account ----------------------------------------------------------------------

class _Recording:
    """Wraps an event store so that each replay and append lands in a shared step list."""

    def __init__(self, store: EventStore, who: str, steps: list, lock: threading.Lock) -> None:
        self.store, self.who, self.steps, self.lock = store, who, steps, lock
        self.r, self.key = store.r, store.key

    def _step(self, action: str, result: str) -> None:
        with self.lock:
            self.steps.append((self.who, action, result))

    def replay(self, fold_, state, after="0-0", batch=500):
        out = self.store.replay(fold_, state, after, batch)
        self._step("replay", f"balance {out[0]}, version {out[2]}")
        return out

    def append(self, expected_version, **event):
        try:
            entry_id = self.store.append(expected_version, **event)
        except redis.ResponseError as exc:
            self._step(f"append {event['type']} {event['amount']} (expects version {expected_version})",
                       f"rejected: {exc}")
            raise
        self._step(f"append {event['type']} {event['amount']} (expects version {expected_version})",
                   "appended")
        return entry_id


def conflict_race(r: redis.Redis, key: str, store_cls: type = EventStore, *, opening: int = 100,
                  amount: int = 80) -> dict:
    """An account holding ``opening``; writers A and B each withdraw ``amount``. A stops at a pause
    point after deciding (replay, funds ok) and before appending; B withdraws; then A appends.

    Returns the steps in order, each writer's result (an entry id, or None if refused), the final
    balance by replay, and the stream's events.
    """
    r.delete(key)
    r.xadd(key, {"type": "deposited", "amount": opening})
    steps: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    a = _Recording(store_cls(r, key), "A", steps, lock)
    b = _Recording(store_cls(r, key), "B", steps, lock)
    pause = PausePoint("A before its append")
    a_result = run_in_thread(withdraw, a, amount, hooks={"before_append": pause}, thread_name="A")
    pause.wait_reached()                                  # A has decided on version 1
    b_result = withdraw(b, amount)                        # B decides and appends
    pause.release()                                       # A appends what it decided earlier
    a_id = a_result.result(timeout=10)
    if a_id is None:
        with lock:
            steps.append(("A", "refuse", f"funds do not cover {amount}"))
    balance, _, version = EventStore(r, key).replay(fold, 0)
    return dict(steps=steps, a=a_id, b=b_result, balance=balance, version=version,
                events=[e for _, e in r.xrange(key)])


def race_table(race: dict, title: str) -> Table:
    return Table(["#", "writer", "action", "result"],
                 [(i, who, action, result) for i, (who, action, result) in enumerate(race["steps"], 1)],
                 title=title, note=f"balance by replay afterwards: {race['balance']} "
                                   f"({race['version']} events)")


# -- replay and snapshots ----------------------------------------------------------------------------

def _timed_replay(store: EventStore, state: int = 0, after: str = "0-0", batch: int = 500) -> tuple:
    t0 = time.perf_counter()
    balance, last_id, read = store.replay(fold, state, after, batch)
    return balance, last_id, read, time.perf_counter() - t0


def snapshot_trial(store: EventStore, snapshot_key: str, at: int) -> dict:
    """Snapshot after event ``at`` (1-based), then replay: the full log, and snapshot + tail.

    Returns {"snapshot": {balance, last_id, version}, "full": (balance, last id, read, s),
    "tail": (balance, last id, read, s)}.
    """
    upto = store.r.xrange(store.key, "-", "+", count=at)[-1][0]
    snap = take_snapshot(store, snapshot_key, upto=upto)
    full = _timed_replay(store)
    saved = store.r.hgetall(snapshot_key)                 # read back: the snapshot is in Redis
    tail = _timed_replay(store, int(saved["balance"]), saved["last_id"])
    return {"snapshot": snap, "full": full, "tail": tail}


def snapshot_table(trial: dict) -> Table:
    full, tail = trial["full"], trial["tail"]
    rows = [("full replay from 0", full[2], full[0], full[3] * 1000),
            (f"snapshot (event {trial['snapshot']['version']}) + tail", tail[2], tail[0], tail[3] * 1000)]
    return Table(["replay", "entries read", "balance", "time (ms)"], rows, fmt={"time (ms)": ".1f"},
                 title="Full replay vs snapshot + tail", note="times are this run's, on this machine")


# -- consumer groups: fan-out across groups, split within one ---------------------------------------

def groups_trial(server: Any, key: str, *, groups: dict[str, int] | None = None, count: int = 10) -> dict:
    """Create each group at the start of the stream; its consumers (real threads, each on its own
    connection) read with XREADGROUP ``>`` COUNT ``count`` and XACK until nothing is left.

    ``groups``: {group name: number of consumers}. Returns {group: {consumer: [ids]}}.
    """
    groups = groups or {"balance": 2, "audit": 1}
    admin = server.client()
    for g in groups:
        try:
            admin.xgroup_destroy(key, g)
        except redis.ResponseError:
            pass
        admin.xgroup_create(key, g, id="0")
    got: dict[str, dict[str, list[str]]] = {g: {} for g in groups}
    barrier = threading.Barrier(sum(groups.values()), timeout=20)

    def consume(group: str, consumer: str) -> None:
        c = server.client()
        mine = got[group].setdefault(consumer, [])
        barrier.wait()
        while reply := c.xreadgroup(group, consumer, {key: ">"}, count=count):
            ids = [entry_id for entry_id, _ in xread_entries(reply, key)]
            if not ids:
                break
            mine += ids
            c.xack(key, group, *ids)
        c.close()

    threads = [threading.Thread(target=consume, args=(g, f"{g[0]}{i}"))
               for g, n in groups.items() for i in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    admin.close()
    return got


def groups_table(got: dict, total: int) -> Table:
    rows = []
    for group, consumers in got.items():
        for consumer, ids in sorted(consumers.items()):
            rows.append((group, consumer, len(ids)))
        union = set().union(*map(set, consumers.values()))
        rows.append((group, "(all consumers)", len(union)))
    return Table(["group", "consumer", "entries received"], rows,
                 title=f"Two groups on one stream of {total} events")


# -- the projector, a real process killed with kill -9 ------------------------------------------------

class StopBeforeCheckpoint:
    """A client that calls ``hook(entry_id)`` just before a checkpoint ``HSET <view> last_id`` is
    issued, directly or queued in a pipeline: the moment between a projection update and its
    checkpoint, without a hook in the pattern's code. For :func:`apply_event` the HSET is queued
    in a MULTI that has not been sent, so nothing of that event has reached Redis yet."""

    def __init__(self, r: Any, hook: Any) -> None:
        self._r, self._hook = r, hook

    def _checkpoint(self, target: Any, name: str, key: Any = None, value: Any = None, **kw: Any) -> Any:
        if key == "last_id":
            self._hook(value)
        return target.hset(name, key, value, **kw)

    def hset(self, name: str, key: Any = None, value: Any = None, **kw: Any) -> Any:
        return self._checkpoint(self._r, name, key, value, **kw)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        return _PipelineProxy(self._r.pipeline(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


class _PipelineProxy:
    def __init__(self, pipe: Any, owner: StopBeforeCheckpoint) -> None:
        self._pipe, self._owner = pipe, owner

    def hset(self, name: str, key: Any = None, value: Any = None, **kw: Any) -> Any:
        return self._owner._checkpoint(self._pipe, name, key, value, **kw)

    def __enter__(self) -> _PipelineProxy:
        self._pipe.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._pipe.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


def projector_worker(ctx: Any, stream: str, view: str, *, atomic: bool, stop_at: int = 0) -> None:
    """A projector process: :func:`project` from the view's checkpoint with :func:`apply_event`
    (``atomic``) or :func:`apply_event_naive`. With ``stop_at`` = N it stops at event N just before
    that event's checkpoint is issued, records ``"stopped"`` and waits there to be killed;
    otherwise it records ``"done"`` with the events it applied."""
    seen = 0

    def before_checkpoint(entry_id: str) -> None:
        nonlocal seen
        seen += 1
        if seen == stop_at:
            ctx.record("stopped", entry_id)
            time.sleep(60)                                # the parent kills this process here

    r = StopBeforeCheckpoint(ctx.client(0), before_checkpoint)
    applied = project(r, stream, view, apply=apply_event if atomic else apply_event_naive)
    ctx.record("done", str(applied))


def view_state(r: redis.Redis, view: str) -> dict:
    """The read model: balance, events applied, last applied id (missing fields as 0 / "0-0")."""
    h = r.hgetall(view)
    return {"balance": int(h.get("balance", 0)), "events": int(h.get("events", 0)),
            "last_id": h.get("last_id", "0-0")}


def projector_crash(server: Any, stream: str, view: str, *, atomic: bool, stop_at: int) -> dict:
    """Start a projector process, ``kill -9`` it at event ``stop_at`` (between the projection update
    and the checkpoint), read the view, then run a fresh projector process to the end.

    Returns the exit code, the id of the event it was killed at, the view at the kill and at the
    end, and the stream's length.
    """
    from ..lab import Workers, run_workers

    r = server.client()
    r.delete(view)
    first = Workers(projector_worker, 1, nodes=[server], args=(stream, view),
                    kwargs={"atomic": atomic, "stop_at": stop_at}).start()
    try:
        stopped = first.wait_for("stopped", timeout=30)
        first.kill("w1")
    finally:
        first.stop()
    at_kill = view_state(r, view)
    second = run_workers(projector_worker, 1, nodes=[server], args=(stream, view), kwargs={"atomic": atomic})
    done = next(e for e in second.log.events if e.kind == "done")
    out = dict(exitcode=first.exitcodes["w1"], killed_at=stopped.detail, at_kill=at_kill,
               resumed_applied=int(done.detail), after=view_state(r, view), xlen=r.xlen(stream),
               killed_event=r.xrange(stream, stopped.detail, stopped.detail)[0][1])
    r.close()
    return out


def projector_table(runs: dict[str, dict], expected: int) -> Table:
    """One row per run: applications before the kill, after the restart, applied twice, balance error."""
    rows = [(name, run["at_kill"]["events"], run["resumed_applied"], run["after"]["events"] - run["xlen"],
             run["after"]["balance"] - expected) for name, run in runs.items()]
    killed = next(iter(runs.values()))
    event = killed["killed_event"]
    return Table(["projector", "applied before the kill", "applied after the restart", "applied twice",
                  "balance off by"], rows,
                 title=f"Projector killed with kill -9 at the same point, then restarted ({killed['xlen']} events)",
                 note=f"independent check: the generated events sum to {expected}; the event at the kill "
                      f"was {event['type']} {event['amount']}")


# -- restarts -----------------------------------------------------------------------------------

def durability_trial(events: list[dict[str, Any]], modes: tuple[str, ...] = ("none", "aof-everysec")) -> dict:
    """Per persistence mode, on a throwaway server: append ``events``, replay, ``kill -9`` the
    server, restart it on the same data dir, replay again. {mode: (len before, balance before,
    len after, balance after)}."""
    from ..server import RedisServer

    out = {}
    for mode in modes:
        s = RedisServer(modules=(), persistence=mode, name=f"es-{mode}")
        with s:
            c = s.client()
            append_all(c, "account:7:events", events)
            before = EventStore(c, "account:7:events").replay(fold, 0)
            s.kill()                                      # kill -9 the server
            s.restart()                                   # same port and data dir
            c = s.client()
            after = EventStore(c, "account:7:events").replay(fold, 0)
            out[mode] = (before[2], before[0], after[2], after[0])
    return out


def durability_table(trial: dict) -> Table:
    return Table(["persistence", "events before", "balance before", "events after restart",
                  "balance after restart"], [(m, *v) for m, v in trial.items()],
                 title="kill -9 of redis-server, then a restart on the same data dir")


# -- replay speed -------------------------------------------------------------------------------

class _CountingClient:
    """A client wrapper counting XRANGE calls (each one round trip)."""

    def __init__(self, r: redis.Redis) -> None:
        self._r, self.calls = r, 0

    def xrange(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._r.xrange(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def replay_speed(r: redis.Redis, key: str, batches: tuple[int, ...] = (1, 10, 100, 1000)) -> dict:
    """Replay the whole stream with each XRANGE COUNT: {batch: (entries read, XRANGE calls, s, events/s)}."""
    out = {}
    for batch in batches:
        c = _CountingClient(r)
        t0 = time.perf_counter()
        _, _, read = EventStore(c, key).replay(fold, 0, batch=batch)
        s = time.perf_counter() - t0
        out[batch] = (read, c.calls, s, read / s if s else float("inf"))
    return out


def plot_replay_speed(speed: dict) -> None:
    """Events per second against the batch size (log x), with a one-line summary."""
    from .. import charts

    fig, ax = charts.figure("Replay speed by XRANGE batch size", xlabel="events per XRANGE (COUNT, log scale)",
                            ylabel="events replayed per second", width=8, height=3)
    xs = list(speed)
    ax.plot(xs, [v[3] for v in speed.values()], marker="o", color=charts.NEUTRAL, label="replay + fold")
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    lo, hi = min(xs), max(xs)
    charts.finish(ax, summary=f"in this run COUNT {lo} replayed {speed[lo][3]:,.0f} events/s "
                  f"({speed[lo][1]} round trips) and COUNT {hi} {speed[hi][3]:,.0f} events/s "
                  f"({speed[hi][1]} round trips)")


def plot_balance(store: EventStore, trial: dict) -> None:
    """The balance after each event, by replay, with the snapshot's position marked."""
    from .. import charts

    path: list[int] = []

    def recording_fold(balance: int, event: dict) -> int:
        path.append(fold(balance, event))
        return path[-1]

    store.replay(recording_fold, 0)
    snap = trial["snapshot"]
    fig, ax = charts.figure("The balance, derived by replaying the log", xlabel="event number",
                            ylabel="balance (units)", width=8, height=3)
    ax.plot(range(1, len(path) + 1), path, color=charts.NEUTRAL, lw=1, label="balance after each event")
    ax.axvline(snap["version"], color=charts.BAD, ls="--", lw=1, label=f"snapshot (event {snap['version']})")
    ax.axvspan(snap["version"], len(path), color=charts.BAD, alpha=0.08, label="tail replayed after it")
    charts.finish(ax, summary=f"in this run the snapshot holds {snap['balance']} at event {snap['version']}; "
                  f"the tail of {trial['tail'][2]} events brings it to {path[-1]}, as the full replay of "
                  f"{len(path)} does")
