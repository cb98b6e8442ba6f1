"""Scenarios for notebooks/11-hash-tag-colocation.ipynb: measurements, probes, faults and views.

The pattern (the hashing rule, tagged key names, the multi-key operations of
:class:`~redistutor.patterns.hash_tag_colocation.UserStore`) is in
:mod:`redistutor.patterns.hash_tag_colocation`; this module holds what the lesson does with it on a
real cluster: loading users under several tag layouts and counting where they land, probing a
half-moved slot, moving a slot under a reader, killing a master, and the charts and tables that
show the results. Every helper returns plain data (or a view), so a notebook cell stays short.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
from redis.exceptions import AskError, MovedError, TryAgainError

from ..patterns.hash_tag_colocation import (
    SLOTS,
    UserStore,
    crc16,
    hashed_part,
    key_slot,
    owner_of,
)
from ..tables import Table

# -- the naive way ---------------------------------------------------------------------------------


def refusals(attempts: Mapping[str, Callable[[], Any]]) -> dict[str, Exception]:
    """Run each attempt; keep the cluster refusals (client-side or CROSSSLOT) by name."""
    out = {}
    for name, attempt in attempts.items():
        try:
            attempt()
        except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterError,
                redis.exceptions.ResponseError) as exc:  # client-side, CROSSSLOT, ASK/TRYAGAIN
            out[name] = exc
    return out


def refusal_table(found: Mapping[str, Exception], *, by: str) -> Table:
    return Table(["command", "refused by", "error"],
                 [[name, by, f"{type(exc).__name__}: {str(exc)[:70]}"] for name, exc in found.items()],
                 title=f"multi-key commands on untagged keys, refused by the {by}")


def placement_table(cluster: Any, keys: Iterable[str]) -> Table:
    """One row per key: the slot the server computes and the master that owns it."""
    return Table(["key", "slot", "master"], [[k, cluster.keyslot(k), cluster.owner(k).name] for k in keys],
                 title="where each key lives")


# -- WATCH across two tagged keys --------------------------------------------------------------------


def watch_race(cluster: Any, store: UserStore, user_id: Any, *, balance: int = 100, slow_wants: int = 60,
               fast_wants: int = 70) -> dict[str, Any]:
    """A slow client WATCHes balance+pending and reads the balance, then is held (a pause point)
    while a fast client reserves ``fast_wants``; then the slow one asks for ``slow_wants``."""
    from ..race import PausePoint, run_in_thread

    store.rc.set(store.key(user_id, "balance"), balance)
    watching = PausePoint("after_watch")
    slow = UserStore(cluster.client(), prefix=store.names.prefix, hooks={"after_watch": watching})
    call = run_in_thread(slow.reserve, user_id, slow_wants)
    _, slow_saw = watching.wait_reached()
    fast_result = store.reserve(user_id, fast_wants)
    watching.release()
    slow_result = call.result(timeout=10)
    final = store.rc.mget(*store.names.keys(user_id, "balance", "pending"))
    slow.rc.close()
    return {"slow_saw": slow_saw, "fast": fast_result, "slow": slow_result, "conflicts": slow.conflicts,
            "final": final}


# -- tag granularity: where 10,000 users land -----------------------------------------------------------


COUNTRIES = ["US", "IN", "BR", "DE", "FR", "GB", "JP", "NG", "MX", "ID"]
WEIGHTS = [40, 15, 10, 8, 7, 6, 5, 4, 3, 2]


def users(n: int = 10_000, *, seed: int = 6) -> list[tuple[int, str]]:
    """``(user id, country)`` pairs, countries drawn with a skewed but realistic mix (40 % US...)."""
    rng = random.Random(seed)
    return [(uid, rng.choices(COUNTRIES, weights=WEIGHTS)[0]) for uid in range(1, n + 1)]


def flush(masters: Mapping[str, redis.Redis]) -> None:
    for c in masters.values():
        c.flushall()


def measure_layouts(rc: Any, masters: Mapping[str, redis.Redis], ranges: list,
                    layouts: Mapping[str, list[str]]) -> dict:
    """Load each layout's keys (flushing in between) and count keys per master: measured with
    DBSIZE, and predicted by our CRC16 and the slot map."""
    measured, predicted = {}, {}
    for name, keys in layouts.items():
        flush(masters)
        load_keys(rc, keys)
        measured[name] = keys_per_node(masters)
        predicted[name] = predicted_keys_per_node(keys, ranges)
    return {"measured": measured, "predicted": predicted}


def keys_per_master_chart(measured: Mapping[str, Mapping[str, int]], *, title: str = "Keys per master"):
    """One bar group per layout: keys on each master (DBSIZE), with a printed summary."""
    from .. import charts

    names = list(measured)
    nodes = sorted({n for m in measured.values() for n in m})
    fig, ax = charts.figure(title, xlabel="tag layout", ylabel="keys on the master (count)")
    width = 0.8 / len(nodes)
    for i, node in enumerate(nodes):
        xs = [j + (i - (len(nodes) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [measured[n].get(node, 0) for n in names], width, label=node, color=charts.PALETTE[i])
    ax.set_xticks(range(len(names)), names)
    shares = {n: spread(measured[n])["busiest_share"] for n in names}
    charts.finish(ax, summary="in this run the busiest master held "
                  + ", ".join(f"{shares[n]:.0%} of the keys with {n}" for n in names))
    return fig


GRAINS: dict[str, Callable[[int, str], Any]] = {
    "1 tag {global}": lambda uid, cc: "global",
    "10 tags (country)": lambda uid, cc: cc,
    "100 tags (id % 100)": lambda uid, cc: uid % 100,
    "10,000 tags (id)": lambda uid, cc: uid,
}


def grain_experiment(rc: Any, masters: Mapping[str, redis.Redis], ranges: list, people: list[tuple[int, str]], *,
                     gets: int = 3000, seed: int = 12) -> dict[str, dict]:
    """For each tag granularity in :data:`GRAINS`: load the users, reset the stats, send ``gets``
    GETs of uniformly random users, and measure keys per slot (COUNTKEYSINSLOT), keys per master
    (DBSIZE) and GETs per master (INFO commandstats), next to our CRC16's predictions."""
    hits = [uid for uid, _ in random.Random(seed).choices(people, k=gets)]
    out = {}
    for name, tag in GRAINS.items():
        flush(masters)
        key_of = {uid: f"user:{{{tag(uid, cc)}}}:{uid}" for uid, cc in people}
        load_keys(rc, list(key_of.values()))
        for c in masters.values():
            c.config_resetstat()
        p = rc.pipeline(transaction=False)
        for uid in hits:
            p.get(key_of[uid])
        p.execute()
        per_slot = Counter(key_slot(k) for k in key_of.values())
        out[name] = {"per_slot": per_slot, "counted": keys_in_slots(masters, ranges, per_slot),
                     "keys": keys_per_node(masters), "ops": ops_per_node(masters, "get"),
                     "predicted_ops": predicted_keys_per_node([key_of[uid] for uid in hits], ranges)}
    return out


def grain_table(grain: Mapping[str, dict]) -> Table:
    rows = []
    for name, g in grain.items():
        k, o = g["keys"], g["ops"]
        rows.append([name, len(g["per_slot"]), max(g["counted"].values()),
                     *(k[m] for m in sorted(k)), *(o[m] for m in sorted(o))])
    nodes = sorted(next(iter(grain.values()))["keys"])
    return Table(["granularity", "slots used", "busiest slot"] + [f"keys {m}" for m in nodes]
                 + [f"GETs {m}" for m in nodes], rows, title="10,000 users, four tag granularities")


def density_chart(grain: Mapping[str, dict], ranges: list):
    """Keys in every used slot along the 16384 slots, one marker series per granularity (log
    scale), each master's range shaded and named."""
    from .. import charts

    fig, ax = charts.figure("Keys per slot along the slot range", xlabel="hash slot (0–16383)",
                            ylabel="keys in the slot (log scale)")
    for i, (a, b, node) in enumerate(ranges):
        ax.axvspan(a, b, color=charts.PALETTE[i % len(charts.PALETTE)], alpha=0.06, lw=0)
        ax.text((a + b) / 2, 0.92, node, transform=ax.get_xaxis_transform(), ha="center", fontsize=9,
                color="#555555")
    for name, g in grain.items():
        slots = sorted(g["counted"])
        ax.scatter(slots, [g["counted"][s] for s in slots], s=8 if len(slots) > 100 else 28, label=name,
                   alpha=0.8, lw=0)
    ax.set_yscale("log")
    ax.set_xlim(0, SLOTS)
    ax.set_ylim(0.5, None)
    busiest = {n: max(g["counted"].values()) for n, g in grain.items()}
    charts.finish(ax, summary="in this run the busiest slot held "
                  + ", ".join(f"{v:,} keys with {n}" for n, v in busiest.items()))
    return fig


# -- resharding -------------------------------------------------------------------------------------


def start_move(cluster: Any, slot: int, source: Any, target: Any, first_key: str) -> None:
    """Begin moving ``slot`` from ``source`` to ``target`` by hand (SETSLOT IMPORTING/MIGRATING)
    and MIGRATE only ``first_key``: the slot is half-moved."""
    target.r.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.ids[source.name])
    source.r.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.ids[target.name])
    source.r.execute_command("MIGRATE", target.host, target.port, "", 0, 5000,
                             "AUTH", cluster.password, "KEYS", first_key)


def probe_half_moved(source: Any, target: Any, user_keys: list[str]) -> dict[str, tuple[str, Any]]:
    """The raw answers of the two nodes, from plain clients, for single and multi-key commands on a
    half-moved slot whose first key has moved (see :func:`answer`)."""
    profile_k, settings_k, updates_k, _ = user_keys

    def asking(*cmd: Any) -> Callable[[], Any]:  # ASKING, then the command, on one connection
        return lambda: target.r.pipeline(transaction=False).execute_command("ASKING").execute_command(*cmd).execute()[1]

    return {
        "source  HGET profile (moved)": answer(lambda: source.r.hget(profile_k, "plan")),
        "source  HGET settings (not yet moved)": answer(lambda: source.r.hget(settings_k, "max_projects")),
        "target  HGET profile, no ASKING": answer(lambda: target.r.hget(profile_k, "plan")),
        "target  ASKING + HGET profile": answer(asking("HGET", profile_k, "plan")),
        "source  EXISTS profile settings (split)": answer(lambda: source.r.exists(profile_k, settings_k)),
        "target  ASKING + EXISTS profile settings": answer(asking("EXISTS", profile_k, settings_k)),
        "source  EXISTS settings updates (both here)": answer(lambda: source.r.exists(settings_k, updates_k)),
    }


def probe_table(probes: Mapping[str, tuple[str, Any]], nodes: Iterable[Any]) -> Table:
    where = {(n.host, n.port): n.name for n in nodes}
    rows = []
    for what, (kind, detail) in probes.items():
        node, _, command = what.partition("  ")
        if kind in ("ASK", "MOVED"):
            detail = f"slot {detail[0]} -> {where.get(detail[1], detail[1])}"
        rows.append([node, command.strip(), kind, "" if detail is None else str(detail)])
    return Table(["node", "command", "answer", "detail"], rows, title="what the two nodes answer half-way")


def move_while_reading(cluster: Any, slot: int, target: Any, user_keys: list[str]) -> dict[str, Any]:
    """Finish moving ``slot`` to ``target`` (the lab's ``migrate_slot``) while a reader thread with its
    own cluster client reads all of ``user_keys`` in a loop. Returns the keys moved, the reads
    before/during/after, the errors and the (plan, updates) pairs the reader saw."""
    client = cluster.client()
    stop, reads, errors, seen = threading.Event(), [0], [], set()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                for k in user_keys:
                    client.type(k)
                seen.add((client.hget(user_keys[0], "plan"), client.get(user_keys[2])))
                reads[0] += 1
            except Exception as exc:  # any error here is a failed read
                errors.append(repr(exc))

    def wait_for(n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while reads[0] < n and time.monotonic() < deadline:
            time.sleep(0.005)

    reader = threading.Thread(target=keep_reading, daemon=True)
    reader.start()
    wait_for(1)
    at_start = reads[0]
    t0 = time.perf_counter()
    moved = cluster.migrate_slot(slot, target.name)
    migrate_ms = (time.perf_counter() - t0) * 1000
    at_end = reads[0]
    wait_for(at_end + 5)
    stop.set()
    reader.join(5)
    client.close()
    return {"moved": moved, "reads": reads[0], "during": at_end - at_start, "after_move": at_end,
            "errors": errors, "seen": seen, "migrate_ms": migrate_ms}


def stale_clients(cluster: Any, prefix: str, user_id: Any, stale: tuple[Any, Any]) -> dict[str, Any]:
    """Two clients whose slot map predates a move: a transaction without retry gets MOVED, one
    with ``attempts=3`` succeeds after a retry."""
    try:
        UserStore(stale[0], prefix=prefix, attempts=1).update(user_id, {"plan": "pro"}, {"max_projects": 50})
        error = None
    except MovedError as exc:
        error = exc
    patient = UserStore(stale[1], prefix=prefix, attempts=3)
    tx = patient.update(user_id, {"plan": "pro"}, {"max_projects": 50})
    return {"error": error, "tx": tx, "retries": patient.retries}


# -- WAIT, on the connection that wrote ------------------------------------------------------------------


def wait_demo(master: Any, replica: Any, key: str, *, timeout_ms: int = 300) -> dict[str, int]:
    """WAIT asked three ways around a frozen replica (SIGSTOP, for ``timeout_ms`` or so):

    * ``fresh_conn``: WAIT 1 on a connection that never wrote: answers at once, proves nothing;
    * ``same_conn_frozen``: a SET and WAIT 1 in one pipeline (same connection) while the replica is
      frozen: 0, the write is not on the replica;
    * ``same_conn``: the same after the replica resumed: 1, the replica has this write.
    """
    client = master.client(socket_timeout=5.0)  # WAIT may block up to its timeout
    fresh = master.client(socket_timeout=5.0)
    replica.pause()
    try:
        p = client.pipeline(transaction=False)
        p.set(key, "written while the replica is frozen")
        p.wait(1, timeout_ms)
        _, frozen = p.execute()
        fresh_answer = fresh.wait(1, timeout_ms)
    finally:
        replica.resume()
    p = client.pipeline(transaction=False)
    p.set(key, "written before the failover")
    p.wait(1, 2000)
    _, acked = p.execute()
    client.close()
    fresh.close()
    return {"fresh_conn": int(fresh_answer), "same_conn_frozen": int(frozen), "same_conn": int(acked)}


def wait_table(w: Mapping[str, int]) -> Table:
    return Table(["how WAIT 1 was sent", "replica", "WAIT answered"], [
        ["on a connection that never wrote", "frozen (SIGSTOP)", w["fresh_conn"]],
        ["after a SET, same connection", "frozen (SIGSTOP)", w["same_conn_frozen"]],
        ["after a SET, same connection", "running", w["same_conn"]],
    ], title="WAIT counts the replicas that have this connection's last write")


def _cluster_state(node: Any) -> str:
    info = node.r.execute_command("CLUSTER", "INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    for line in str(info).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _key_served_by(cluster: Any, node: Any, prefix: str) -> str:
    ranges = [(a, b, node.name) for a, b, _ in
              ((int(r.partition("-")[0]), int(r.partition("-")[2] or r.partition("-")[0]), 0)
               for r in cluster.slots_of(node))]
    n = 0
    while not any(a <= key_slot(f"{prefix}:{{{n}}}:probe") <= b for a, b, _ in ranges):
        n += 1
    return f"{prefix}:{{{n}}}:probe"


def kill_and_fail_over(cluster: Any, owner: Any, replica: Any, prefix: str, user_id: Any,
                       user_keys: list[str], *, extra_key: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """``kill -9`` the master ``owner`` and let ``replica`` take over, looking at the cluster on the way.

    The replica is frozen (SIGSTOP) across the kill, so the window between "the master is flagged
    failed" and "the replica has won" stays open until we have looked: once another master reports
    ``cluster_state:fail``, a GET and a SET on a key of *its own* slots are sent to it directly
    (both answer CLUSTERDOWN: the cluster is down, not read-only). Then the replica resumes and is
    elected; we read the entity (and ``extra_key``) and run a transaction on the new master.
    Finally the old master restarts (it rejoins as a replica) and we fail back.
    """
    before = UserStore(cluster.rc, prefix=prefix).read(user_id)
    other = next(cluster[n] for n in cluster.masters() if n != owner.name)
    probe = _key_served_by(cluster, other, prefix)
    t0 = time.perf_counter()
    replica.pause()
    try:
        owner.kill()
        try:
            UserStore(cluster.rc, prefix=prefix, attempts=1).update(user_id, {"plan": "team"}, {"max_projects": 200})
            dead_error = None
        except redis.ConnectionError as exc:
            dead_error = exc
        deadline = time.monotonic() + timeout
        while _cluster_state(other) != "fail" and time.monotonic() < deadline:
            time.sleep(0.05)
        state_seen = _cluster_state(other)
        down_read = answer(lambda: other.r.get(probe))
        down_write = answer(lambda: other.r.set(probe, "x"))
    finally:
        replica.resume()
    cluster.wait_promoted(replica)
    failover_s = time.perf_counter() - t0
    slot = key_slot(user_keys[0])
    promoted = cluster.owner(slot=slot)
    fresh = cluster.client()
    store = UserStore(fresh, prefix=prefix)
    out = {"before": before, "dead_error": dead_error, "failover_s": failover_s, "promoted": promoted,
           "other": other.name, "state_seen": state_seen, "down_read": down_read, "down_write": down_write,
           "state_after": _cluster_state(other),
           "read_after": store.read(user_id), "keys_on_replica": replica.r.exists(*user_keys),
           "tx": store.update(user_id, {"plan": "team"}, {"max_projects": 200}),
           "extra": fresh.get(extra_key) if extra_key else None}
    fresh.close()
    owner.restart()
    cluster.wait_ok()
    out["rejoined_as"] = cluster.role(owner)
    cluster.failover(owner)
    out["masters"] = cluster.masters()
    out["owner_after_failback"] = cluster.owner(slot=slot)
    return out


def failover_table(fo: Mapping[str, Any], owner: str) -> Table:
    return Table(["moment", "what happened"], [
        [f"{owner} killed, its replica frozen", f"{fo['other']} reports cluster_state:{fo['state_seen']}"],
        [f"GET on a slot of {fo['other']}", fo["down_read"][0]],
        [f"SET on a slot of {fo['other']}", fo["down_write"][0]],
        ["replica resumed and elected", f"{fo['promoted'].name} serves the slot; cluster_state:{fo['state_after']}"],
        ["user 123 on the new master", f"{fo['keys_on_replica']} of 4 keys; transaction -> {fo['tx']}"],
        ["old master restarted", f"rejoined as {fo['rejoined_as']}; failed back, masters {fo['masters']}"],
    ], title="failover, step by step")


# -- measuring where keys land (shared by the sections above) -------------------------------------------


def answer(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Run one command against one node (a plain client, no cluster logic) and name its answer.

    Returns ``("OK", result)``, ``("ASK", (slot, (host, port)))``, ``("MOVED", (slot, (host, port)))``,
    ``("TRYAGAIN", None)``, ``("CLUSTERDOWN", None)`` or ``("CROSSSLOT", None)``: what a cluster client has to act on.
    """
    try:
        return "OK", fn()
    except MovedError as exc:                    # MovedError subclasses AskError: test it first
        return "MOVED", (exc.slot_id, exc.node_addr)
    except AskError as exc:
        return "ASK", (exc.slot_id, exc.node_addr)
    except TryAgainError:
        return "TRYAGAIN", None
    except redis.exceptions.ClusterDownError:
        return "CLUSTERDOWN", None
    except redis.exceptions.ClusterCrossSlotError:
        return "CROSSSLOT", None


def predicted_keys_per_node(keys: Iterable[str], ranges: list[tuple[int, int, str]]) -> Counter:
    """How many of ``keys`` each node should hold, from our own CRC16 and the slot map."""
    return Counter(owner_of(key_slot(k), ranges) for k in keys)


def spread(counts: Mapping[str, int]) -> dict[str, float]:
    """Share of the busiest node, and the worst deviation from the mean, for a keys-per-node count."""
    total = sum(counts.values())
    mean = total / len(counts)
    return {
        "busiest_share": max(counts.values()) / total,
        "max_deviation": max(abs(v - mean) for v in counts.values()) / mean,
    }


def load_keys(rc: Any, keys: list[str], *, value: str = "1", batch: int = 1000) -> None:
    """SET every key through the cluster client's pipeline (grouped per node by redis-py)."""
    for i in range(0, len(keys), batch):
        p = rc.pipeline(transaction=False)
        for k in keys[i:i + batch]:
            p.set(k, value)
        p.execute()


def keys_per_node(nodes: Mapping[str, redis.Redis]) -> Counter:
    """The measured truth: DBSIZE on each master."""
    return Counter({name: int(c.dbsize()) for name, c in nodes.items()})


def keys_in_slots(nodes: Mapping[str, redis.Redis], ranges: list[tuple[int, int, str]],
                  slots: Iterable[int]) -> Counter:
    """The measured keys per slot: ``CLUSTER COUNTKEYSINSLOT`` for each slot, asked of its owner
    (one pipeline per node)."""
    by_node: dict[str, list[int]] = {}
    for slot in slots:
        by_node.setdefault(owner_of(slot, ranges), []).append(slot)
    out: Counter[str] = Counter()
    for node, wanted in by_node.items():
        p = nodes[node].pipeline(transaction=False)
        for slot in wanted:
            p.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
        out.update(dict(zip(wanted, (int(n) for n in p.execute()))))
    return out


def ops_per_node(nodes: Mapping[str, redis.Redis], command: str = "get") -> Counter:
    """Calls of ``command`` each node has served since its last ``CONFIG RESETSTAT``
    (``INFO commandstats``): the load, as opposed to the keys."""
    return Counter({name: int(c.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
                    for name, c in nodes.items()})


def random_keys(n: int, *, alphabet: str = "ab{}:1", seed: int = 11, max_len: int = 8) -> list[str]:
    """``n`` random keys over ``alphabet`` (lengths 0 to ``max_len``): fuzz for the hashing rule."""
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len))) for _ in range(n)]


def server_keyslots(node: redis.Redis, keys: list[str]) -> list[int]:
    """``CLUSTER KEYSLOT`` of every key, asked of one node in one pipeline."""
    p = node.pipeline(transaction=False)
    for k in keys:
        p.execute_command("CLUSTER", "KEYSLOT", k)
    return [int(s) for s in p.execute()]


def explain_slot(key: str, ranges: list[tuple[int, int, str]]) -> str:
    """One line: the key, the part that is hashed, its CRC16, the slot and the master that owns it."""
    part = hashed_part(key)
    crc = crc16(part)
    return (f"{key!r} hashes {part.decode(errors='replace')!r}: CRC16 = 0x{crc:04x} = {crc}, "
            f"mod 16384 = slot {crc % SLOTS}, on {owner_of(crc % SLOTS, ranges)}")


def slot_calculator(ranges: list[tuple[int, int, str]], key: str = "user:{123}:profile") -> Any:
    """A text box: type a key, read :func:`explain_slot` of it (ipywidgets). Without ipywidgets,
    the explanation of ``key`` as text."""
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - ipywidgets is a dependency of the notebooks
        return explain_slot(key, ranges)
    box = ipywidgets.Text(value=key, description="key", continuous_update=True)
    result = ipywidgets.Label(value=explain_slot(key, ranges))

    def update(change: dict) -> None:
        result.value = explain_slot(change["new"], ranges)

    box.observe(update, names="value")
    return ipywidgets.VBox([box, result])
