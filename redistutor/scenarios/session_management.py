"""The experiments of notebooks/24-session-management.ipynb, each behind a one-line helper.

The pattern (:class:`~redistutor.patterns.session_management.SessionStore` and
:class:`~redistutor.patterns.session_management.Sessions`) lives in the pattern module; this module
stages the races with pause points, measures sizes and TTLs, and draws the charts. Every helper
returns plain data or a :class:`~redistutor.Table`.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from ..race import PausePoint, run_in_thread, wait_until
from ..tables import Table

# A realistic 10-field session (what a web framework keeps after login).
SESSION = {"user_id": "1042", "created_at": "1733112000", "last_access": "1733113800", "ip": "203.0.113.7",
           "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "role": "member", "theme": "light",
           "locale": "en-GB", "csrf": "Zq3lUXa7d0Pp9sYkqWc1bT2n", "cart": "[]"}


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the naive way: a serialized string rewritten whole --------------------------------------------

def naive_add_to_cart(r: Any, key: str, item: str, between: Callable[[], None] | None = None,
                      keepttl: bool = False) -> None:
    """Request A on a JSON string: GET, append to the cart in Python, SET the whole string back."""
    s = json.loads(r.get(key))
    cart = json.loads(s["cart"])
    s["cart"] = json.dumps([*cart, item])
    if between:
        between()
    r.set(key, json.dumps(s), keepttl=keepttl)


def naive_set_theme(r: Any, key: str, theme: str, keepttl: bool = False) -> None:
    """Request B on a JSON string, start to finish."""
    s = json.loads(r.get(key))
    s["theme"] = theme
    r.set(key, json.dumps(s), keepttl=keepttl)


def hash_add_to_cart(r: Any, key: str, item: str, between: Callable[[], None] | None = None) -> None:
    """Request A on a hash: read and write only the cart field."""
    cart = json.loads(r.hget(key, "cart"))
    if between:
        between()
    r.hset(key, "cart", json.dumps([*cart, item]))


def json_add_to_cart(r: Any, key: str, item: str, between: Callable[[], None] | None = None) -> None:
    """Request A on a JSON document: append on the server, at one path."""
    if between:
        between()
    r.json().arrappend(key, "$.cart", item)


def _race(a: Callable[[Callable[[], None]], None], b: Callable[[], None]) -> None:
    """A runs until its pause point, B runs start to finish, then A finishes."""
    pause = PausePoint("A between its read and its write")
    fut = run_in_thread(a, pause, thread_name="request-A")
    pause.wait_reached()
    b()
    pause.release()
    fut.result(timeout=10)


def lost_update_race(r: Any, prefix: str, ttl_s: int = 1800) -> dict[str, dict[str, Any]]:
    """Request A adds a book to the cart while request B switches the theme to dark, with A paused
    between its read and its write, on four ways of storing the session. Returns, per way, the cart,
    the theme and the TTL (s) afterwards."""
    out: dict[str, dict[str, Any]] = {}
    ways = {"string, GET + SET": False, "string, GET + SET KEEPTTL": True}
    for name, keep in ways.items():
        key = f"{prefix}:{'keepttl' if keep else 'string'}"
        r.set(key, json.dumps(SESSION), ex=ttl_s)
        _race(lambda p, key=key, keep=keep: naive_add_to_cart(r, key, "book", p, keep),
              lambda key=key, keep=keep: naive_set_theme(r, key, "dark", keep))
        s = json.loads(r.get(key))
        out[name] = {"key": key, "cart": json.loads(s["cart"]), "theme": s["theme"], "ttl": r.ttl(key)}
    key = f"{prefix}:hash"
    with r.pipeline(transaction=True) as tx:
        tx.hset(key, mapping=SESSION)
        tx.expire(key, ttl_s)
        tx.execute()
    _race(lambda p: hash_add_to_cart(r, key, "book", p), lambda: r.hset(key, "theme", "dark"))
    out["hash, HSET per field"] = {"key": key, "cart": json.loads(r.hget(key, "cart")),
                                   "theme": r.hget(key, "theme"), "ttl": r.ttl(key)}
    key = f"{prefix}:json"
    r.json().set(key, "$", {**SESSION, "cart": []})
    r.expire(key, ttl_s)
    _race(lambda p: json_add_to_cart(r, key, "book", p), lambda: r.json().set(key, "$.theme", "dark"))
    doc = r.json().get(key)
    out["JSON document, path updates"] = {"key": key, "cart": doc["cart"], "theme": doc["theme"], "ttl": r.ttl(key)}
    return out


def race_table(race: dict[str, dict[str, Any]]) -> Table:
    def ttl(t: int) -> str:
        return "none (immortal)" if t == -1 else "gone" if t == -2 else "kept"

    return Table(["stored as, updated with", "cart", "theme", "TTL"],
                 [[name, ", ".join(x["cart"]) or "(empty)", x["theme"], ttl(x["ttl"])] for name, x in race.items()],
                 title="A adds a book to the cart while B switches to dark (A paused between read and write)")


# -- memory and round trips of the three forms -------------------------------------------------------

def session_of(fields: int) -> dict[str, str]:
    """A session with ``fields`` fields: the 10 of SESSION, then more short preferences."""
    extra = {f"pref_{i}": f"value-{i}" for i in range(max(0, fields - len(SESSION)))}
    return dict(list({**SESSION, **extra}.items())[:fields])


def store_three_ways(r: Any, prefix: str, data: dict[str, str]) -> dict[str, str]:
    keys = {"hash": f"{prefix}:hash", "JSON string": f"{prefix}:string", "JSON document": f"{prefix}:doc"}
    r.delete(*keys.values())
    r.hset(keys["hash"], mapping=data)
    r.set(keys["JSON string"], json.dumps(data))
    r.json().set(keys["JSON document"], "$", data)
    return keys


def memory_sweep(r: Any, prefix: str, sizes=(5, 10, 20, 40, 80)) -> list[dict[str, Any]]:
    """MEMORY USAGE of the same session as a hash, a JSON string and a JSON document, by field count,
    with the payload (field names and values) Python counts."""
    rows = []
    for n in sizes:
        data = session_of(n)
        keys = store_three_ways(r, f"{prefix}:{n}", data)
        row: dict[str, Any] = {"fields": n, "payload": sum(len(k) + len(v) for k, v in data.items()),
                               "encoding": r.object("encoding", keys["hash"])}
        row.update({form: r.memory_usage(k, samples=0) for form, k in keys.items()})
        rows.append(row)
        r.delete(*keys.values())
    return rows


def memory_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["fields", "payload (bytes)", "hash (bytes)", "hash encoding", "JSON string (bytes)",
                  "JSON document (bytes)"],
                 [[x["fields"], x["payload"], x["hash"], x["encoding"], x["JSON string"], x["JSON document"]]
                  for x in rows], title="MEMORY USAGE of one session, three ways")


def plot_memory(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("Memory per session by number of fields", xlabel="fields in the session",
                            ylabel="MEMORY USAGE (bytes)")
    xs = [x["fields"] for x in rows]
    for form, marker in (("hash", "o"), ("JSON string", "s"), ("JSON document", "^")):
        ax.plot(xs, [x[form] for x in rows], marker=marker, label=form)
    ax.plot(xs, [x["payload"] for x in rows], ":", color="grey", label="payload (names + values)")
    ten = next(x for x in rows if x["fields"] == 10)
    charts.finish(ax, summary=f"in this run a 10-field session took {ten['hash']} bytes as a hash, "
                  f"{ten['JSON string']} as a JSON string and {ten['JSON document']} as a JSON document")


def one_field_costs(server: Any, r: Any, prefix: str) -> list[dict[str, Any]]:
    """Read one field and change one field, each way: the commands the client sent (traced), their
    round trips, and whether the change is one atomic command."""
    from ..trace import trace

    keys = store_three_ways(r, prefix, SESSION)
    rows = []
    for form, key in keys.items():
        with trace(r) as read:
            if form == "hash":
                r.hget(key, "theme")
            elif form == "JSON string":
                json.loads(r.get(key))["theme"]
            else:
                r.json().get(key, "$.theme")
        with trace(r) as write:
            if form == "hash":
                r.hset(key, "theme", "dark")
            elif form == "JSON string":
                naive_set_theme(r, key, "dark", keepttl=True)
            else:
                r.json().set(key, "$.theme", "dark")
        rows.append({"form": form, "read": " ".join(read.names()), "read trips": read.round_trips,
                     "write": " + ".join(write.names()), "write trips": write.round_trips,
                     "atomic": write.round_trips == 1})
    r.delete(*keys.values())
    return rows


def costs_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["stored as", "read one field", "round trips", "change one field", "round trips ", "atomic"],
                 [[x["form"], x["read"], x["read trips"], x["write"], x["write trips"], x["atomic"]] for x in rows],
                 title="Reading and changing the theme (traced)")


# -- sliding expiry ----------------------------------------------------------------------------------

def sliding_trial(store_cls: Any, r: Any, prefix: str, idle_ms: int = 400, max_ms: int = 1200,
                  run_ms: int = 1800, every_ms: int = 80, sample_ms: int = 20) -> dict[str, Any]:
    """Three sessions: one left idle, one read every ``every_ms`` (hard lifetime far away), one read
    as often but capped at ``max_ms``. Samples PTTL every ``sample_ms``; records each read's result."""
    stores = {"idle": store_cls(r, prefix=prefix, idle_ms=idle_ms, max_ms=60_000),
              "active": store_cls(r, prefix=prefix, idle_ms=idle_ms, max_ms=60_000),
              "active, capped": store_cls(r, prefix=prefix, idle_ms=idle_ms, max_ms=max_ms)}
    sids = {name: s.create(user_id=name) for name, s in stores.items()}
    t0 = time.monotonic()
    samples: dict[str, list[tuple[float, int]]] = {n: [] for n in stores}
    reads: dict[str, list[tuple[float, bool]]] = {n: [] for n in stores if n != "idle"}
    next_read = 0.0
    while (elapsed := (time.monotonic() - t0) * 1000) < run_ms:
        if elapsed >= next_read:
            for name in reads:
                reads[name].append((elapsed, stores[name].get(sids[name]) is not None))
            next_read += every_ms
        for name, sid in sids.items():
            samples[name].append((elapsed, r.pttl(f"{prefix}:{sid}")))
        time.sleep(sample_ms / 1000)
    gaps = [b - a for a, b in zip([t for t, _ in reads["active"]], [t for t, _ in reads["active"]][1:])]
    return {"samples": samples, "reads": reads, "sids": sids, "idle_ms": idle_ms, "max_ms": max_ms,
            "max_gap_ms": max(gaps), "alive": {n: r.exists(f"{prefix}:{s}") == 1 for n, s in sids.items()}}


def first_gone(trial: dict[str, Any], name: str) -> float | None:
    """When the sampled PTTL of session ``name`` first said the key was gone (-2), in ms."""
    return next((t for t, p in trial["samples"][name] if p == -2), None)


def plot_sliding(trial: dict[str, Any]) -> None:
    from .. import charts

    fig, ax = charts.figure("Sliding expiry: PTTL of three sessions", xlabel="time since login (ms)",
                            ylabel="PTTL (ms)")
    for (name, pts), style in zip(trial["samples"].items(), ("-", "-", "--")):
        ax.plot([t for t, p in pts if p >= 0], [p for _, p in pts if p >= 0], style, label=name)
    ax.plot([t for t, _ in trial["reads"]["active"]], [trial["idle_ms"]] * len(trial["reads"]["active"]),
            "|", color="black", markersize=8, label="a read (get)")
    ax.axvline(trial["max_ms"], ls="--", color="grey", label=f"hard lifetime ({trial['max_ms']} ms)")
    gone = {n: first_gone(trial, n) for n in trial["samples"]}
    charts.finish(ax, summary="in this run the idle session was gone at "
                  f"{gone['idle']:.0f} ms, the capped one at {gone['active, capped']:.0f} ms, and the active one "
                  f"{'was still alive' if trial['alive']['active'] else 'was gone'} at the end "
                  f"(longest gap between reads: {trial['max_gap_ms']:.0f} ms)")


# -- per-field TTL -------------------------------------------------------------------------------------

def hgetex_trap(r: Any, key: str, idle_ms: int = 10_000) -> dict[str, Any]:
    """HGETEX ... PX reads a field and sets *that field's* TTL: the key's TTL does not move."""
    r.delete(key)
    r.hset(key, mapping={"user_id": "1042", "theme": "light"})
    r.pexpire(key, idle_ms)
    before = r.pttl(key)
    got = r.execute_command("HGETEX", key, "PX", 5 * idle_ms, "FIELDS", 1, "user_id")
    return {"HGETEX reply": got, "key PTTL before": before, "key PTTL after": r.pttl(key),
            "field HPTTL user_id": r.hpttl(key, "user_id")[0], "field HPTTL theme": r.hpttl(key, "theme")[0]}


def csrf_trial(r: Any, store: Any, field_ms: int = 150) -> dict[str, Any]:
    """A CSRF token field that expires on its own inside a live session (HPEXPIRE), then a new token
    written with HSET (which clears the field's TTL)."""
    sid = store.create(user_id="ada", csrf=secrets.token_urlsafe(16))
    key = f"{store.prefix}:{sid}"
    facts: dict[str, Any] = {"encoding before": r.object("encoding", key)}
    facts["HPEXPIRE reply"] = r.hpexpire(key, field_ms, "csrf")[0]
    facts["encoding with a field TTL"] = r.object("encoding", key)
    facts["HPTTL csrf, user_id, missing"] = r.hpttl(key, "csrf", "user_id", "missing")
    wait_until(lambda: not r.hexists(key, "csrf"), 10, "the csrf field to expire")
    facts["csrf after its TTL"] = r.hget(key, "csrf")
    facts["session after its TTL"] = sorted(r.hkeys(key))
    facts["session PTTL > 0"] = r.pttl(key) > 0
    r.hset(key, "csrf", secrets.token_urlsafe(16))
    r.hpexpire(key, 60_000, "csrf")
    r.hset(key, "csrf", "rotated-by-plain-HSET")
    facts["HPTTL csrf after HSET"] = r.hpttl(key, "csrf")[0]
    facts["HEXPIRE csrf 300 s, then HTTL"] = (r.hexpire(key, 300, "csrf")[0], r.httl(key, "csrf")[0])
    return {"sid": sid, "key": key, **facts}


def facts_table(facts: dict[str, Any], title: str) -> Table:
    """A two-column view of measured facts (None shown as None, not as an empty cell)."""
    return Table(["measure", "value"], [[k, "None" if v is None else v] for k, v in facts.items()
                                        if k not in ("sid", "key")], title=title)


# -- writes that resurrect -------------------------------------------------------------------------

def resurrect_race(r: Any, store: Any, idle_ms: int = 150) -> dict[str, Any]:
    """A request reads its session, is paused while the session idles out, then writes one field.
    The naive HSET recreates a one-field hash with no TTL; the pattern's update refuses."""
    out = {}
    for name in ("naive HSET", "Sessions.update"):
        sid = store.create(user_id="ada")
        key = f"{store.prefix}:{sid}"
        r.pexpire(key, idle_ms)
        pause = PausePoint("after the read")

        def request(key=key, sid=sid, name=name, pause=pause):
            store.get(sid)
            pause()
            return r.hset(key, "theme", "dark") == 1 if name == "naive HSET" else store.update(sid, theme="dark")

        fut = run_in_thread(request, thread_name="request")
        pause.wait_reached()
        r.pexpire(key, idle_ms)                       # the session idles out while the request works
        wait_until(lambda key=key: not r.exists(key), 10, "the session to expire")
        pause.release()
        wrote = fut.result(timeout=10)
        out[name] = {"key": key, "sid": sid, "wrote": wrote, "fields": r.hgetall(key), "ttl": r.ttl(key),
                     "get afterwards": store.get(sid)}
    return out


def resurrect_table(res: dict[str, dict[str, Any]]) -> Table:
    return Table(["write", "reply", "hash left behind", "TTL (s)", "get() afterwards"],
                 [[n, x["wrote"], x["fields"] or "(none)", x["ttl"],
                   "None" if x["get afterwards"] is None else x["get afterwards"]] for n, x in res.items()],
                 title="Writing theme=dark just after the session expired")


# -- the per-user index and "log out everywhere" ----------------------------------------------------

def page_login(r: Any, prefix: str, user_id: str, idle_ms: int, index_ms: int) -> str:
    """The seed page's way: a session hash with a TTL, SADD to the index, and a fixed index TTL."""
    sid = secrets.token_urlsafe(32)
    r.hset(f"{prefix}:{sid}", mapping={"user_id": user_id})
    r.pexpire(f"{prefix}:{sid}", idle_ms)
    r.sadd(f"{prefix}:user:{user_id}", sid)
    r.pexpire(f"{prefix}:user:{user_id}", index_ms)
    return sid


def page_touch(r: Any, prefix: str, sid: str, idle_ms: int) -> dict[str, str]:
    data = r.hgetall(f"{prefix}:{sid}")
    r.pexpire(f"{prefix}:{sid}", idle_ms)
    return data


def page_logout_all(r: Any, prefix: str, user_id: str, between: Callable[[], None] | None = None) -> int:
    """The seed page's "log out everywhere": SMEMBERS, DEL every session, DEL the set."""
    index = f"{prefix}:user:{user_id}"
    sids = r.smembers(index)
    if between:
        between()
    for sid in sids:
        r.delete(f"{prefix}:{sid}")
    r.delete(index)
    return len(sids)


def index_ttl_trial(r: Any, store_cls: Any, prefix: str, idle_ms: int = 300, index_ms: int = 600,
                    run_ms: int = 900, every_ms: int = 60) -> dict[str, Any]:
    """A session kept busy past its index's TTL, then "log out everywhere": the page's fixed index
    TTL vs the pattern's index, whose TTL is the hard lifetime (10 s here) that caps every session."""
    page_sid = page_login(r, f"{prefix}:page", "ada", idle_ms, index_ms)
    store = store_cls(r, prefix=f"{prefix}:pattern", idle_ms=idle_ms, max_ms=10_000)
    sid = store.create(user_id="ada")
    t0 = time.monotonic()
    while (time.monotonic() - t0) * 1000 < run_ms:
        page_touch(r, f"{prefix}:page", page_sid, idle_ms)
        store.get(sid)
        time.sleep(every_ms / 1000)
    out: dict[str, Any] = {
        "fixed index TTL": {"index exists": r.exists(f"{prefix}:page:user:ada") == 1,
                 "logged out": page_logout_all(r, f"{prefix}:page", "ada"),
                 "session alive after": r.exists(f"{prefix}:page:{page_sid}") == 1},
        "index TTL = hard lifetime": {"index exists": r.exists(f"{prefix}:pattern:user:ada") == 1,
                    "logged out": store.logout_everywhere("ada"),
                    "session alive after": r.exists(f"{prefix}:pattern:{sid}") == 1}}
    r.delete(f"{prefix}:page:{page_sid}")
    return out


def index_drift_trial(r: Any, store_cls: Any, prefix: str, users: int = 10, each: int = 3,
                      run_ms: int = 1000, sample_ms: int = 25, seed: int = 24) -> dict[str, Any]:
    """``users`` x ``each`` sessions that go idle after 100-900 ms (random, seeded): live sessions vs
    ids listed in the users' indexes, sampled until every session is gone."""
    rng = random.Random(seed)
    store = store_cls(r, prefix=prefix, idle_ms=60_000, max_ms=60_000)
    keys, indexes = [], [f"{prefix}:user:u{u}" for u in range(users)]
    for u in range(users):
        for _ in range(each):
            sid = store.create(user_id=f"u{u}")
            keys.append(f"{prefix}:{sid}")
            r.pexpire(keys[-1], rng.randint(100, 900))   # as if each had been read at a different moment
    t0, samples = time.monotonic(), []
    while True:
        elapsed = (time.monotonic() - t0) * 1000
        with r.pipeline(transaction=False) as p:
            p.exists(*keys)
            for index in indexes:
                p.scard(index)
            live, *listed = p.execute()
        samples.append((elapsed, live, sum(listed)))
        if live == 0 and elapsed >= run_ms:
            return {"samples": samples, "sessions": len(keys)}
        time.sleep(sample_ms / 1000)


def plot_index_drift(trial: dict[str, Any]) -> None:
    from .. import charts

    fig, ax = charts.figure("Live sessions vs ids in the users' indexes", xlabel="time (ms)", ylabel="sessions")
    xs = [t for t, _, _ in trial["samples"]]
    ax.plot(xs, [n for _, n, _ in trial["samples"]], label="live sessions (EXISTS)")
    ax.plot(xs, [n for _, _, n in trial["samples"]], "--", label="ids listed (SCARD)")
    last = trial["samples"][-1]
    charts.finish(ax, summary=f"in this run all {trial['sessions']} sessions idled out by {last[0]:.0f} ms, "
                  f"and the indexes still listed {last[2]} ids")


class _PausingPipeline(redis.client.Pipeline):
    """A pipeline that calls ``hook()`` right after a SMEMBERS it sends while WATCHing."""

    hook: Callable[[], None] | None = None

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().execute_command(*args, **kwargs)
        if self.watching and str(args[0]).upper() == "SMEMBERS" and self.hook:
            hook, self.hook = self.hook, None
            hook()
        return reply


def pausing_client(r: redis.Redis, hook: Callable[[], None]) -> redis.Redis:
    """A client sharing ``r``'s pool whose pipelines pause at ``hook`` after a watched SMEMBERS."""

    class Client(redis.Redis):
        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
            p = _PausingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
            p.hook = hook
            return p

    return Client(connection_pool=r.connection_pool)


def logout_race(r: Any, store_cls: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """Log out everywhere (2 sessions) while the user logs in on a third device, the login landing
    between the read of the index and the deletes. The page's way vs the pattern's WATCH."""
    out = {}
    for name in ("usual: SMEMBERS, DEL, DEL", "pattern: WATCH, SMEMBERS, MULTI/EXEC"):
        p = f"{prefix}:{'page' if name.startswith('page') else 'pattern'}"
        store = store_cls(r, prefix=p, idle_ms=60_000, max_ms=120_000)
        old = [store.create(user_id="ada") for _ in range(2)]
        pause = PausePoint("after SMEMBERS")
        if name.startswith("usual"):
            fut = run_in_thread(page_logout_all, r, p, "ada", pause, thread_name="logout")
        else:
            racing = store_cls(pausing_client(r, pause), prefix=p, idle_ms=60_000, max_ms=120_000)
            fut = run_in_thread(racing.logout_everywhere, "ada", thread_name="logout")
        pause.wait_reached()
        new = store.create(user_id="ada")                # the login on the third device
        pause.release()
        fut.result(timeout=10)
        out[name] = {"old alive": sum(r.exists(f"{p}:{s}") for s in old), "new alive": r.exists(f"{p}:{new}") == 1,
                     "new indexed": r.sismember(f"{p}:user:ada", new) == 1}
        r.delete(f"{p}:{new}")
    return out


def logout_table(race: dict[str, dict[str, Any]]) -> Table:
    return Table(["log out everywhere", "old sessions alive", "the new login's session", "listed in the index"],
                 [[n, x["old alive"], "alive" if x["new alive"] else "deleted", "yes" if x["new indexed"] else "no"]
                  for n, x in race.items()],
                 title="Log out everywhere (2 sessions) while a login lands between the read and the deletes")


def index_ttl_table(ttl: dict[str, Any]) -> Table:
    return Table(["index", "index still there", "sessions logged out", "busy session alive afterwards"],
                 [[n, x["index exists"], x["logged out"], x["session alive after"]] for n, x in ttl.items()],
                 title="A session kept busy past the index's TTL, then \"log out everywhere\"")


# -- session fixation and token entropy ---------------------------------------------------------------

def fixation_trial(store: Any) -> dict[str, Any]:
    """An attacker gets an anonymous session id and plants it in the victim's browser; the victim
    logs in. Naive login writes the user into that session; the pattern's login creates a new one."""
    planted = store.create(user_id="anonymous")
    naive = store.update(planted, user_id="victim")                 # login "upgrades" the session
    naive_sees = (store.get(planted) or {}).get("user_id")
    planted2 = store.create(user_id="anonymous")
    fresh = store.create(user_id="victim")                           # login: a new id...
    store.r.delete(f"{store.prefix}:{planted2}")                     # ...and the old one is gone
    return {"naive": {"updated": naive, "attacker sees": naive_sees},
            "rotated": {"attacker sees": (store.get(planted2) or {}).get("user_id"),
                        "victim sees": (store.get(fresh) or {}).get("user_id"), "new id differs": fresh != planted2}}


def seeded_token(seed: int) -> str:
    """A token from Python's `random` seeded with the login time in seconds: do not do this."""
    return f"{random.Random(seed).getrandbits(64):016x}"


def guess_seeded(token: str, now_s: int, window_s: int = 3600) -> int | None:
    """How many guesses an attacker needs who knows roughly when the login happened (None: not found)."""
    for i in range(window_s + 1):
        if seeded_token(now_s - i) == token:
            return i + 1
    return None


def _common_positions(tokens: list[str]) -> int:
    """Characters (dashes aside) that are the same, at the same position, in every token."""
    bare = [t.replace("-", "") for t in tokens]
    return sum(len({t[i] for t in bare}) == 1 for i in range(min(map(len, bare))))


def token_trial(r: Any, key: str, n: int = 1000) -> list[dict[str, Any]]:
    """``n`` real tokens of each kind: one example, length, random bits by construction, distinct
    tokens, characters shared by all of them, and how many guesses finding one took."""
    r.delete(key)
    now_s = int(time.time())
    kinds: dict[str, tuple[Callable[[], str], int | str]] = {
        "secrets.token_urlsafe(32)": (lambda: secrets.token_urlsafe(32), 256),
        "uuid.uuid4()": (lambda: str(uuid.uuid4()), 122),
        "uuid.uuid1() (time + host)": (lambda: str(uuid.uuid1()), "14 at most"),
        "INCR counter": (lambda: str(r.incr(key)), 0),
        "random seeded with the time": (lambda: seeded_token(now_s), 0),
    }
    rows = []
    for name, (make, bits) in kinds.items():
        tokens = [make() for _ in range(n)]
        guesses: int | None = None
        if name.startswith("INCR"):
            guesses = 1                                  # the next id is the last one + 1
        elif name.startswith("random"):
            guesses = guess_seeded(tokens[0], now_s + 2)
        rows.append({"kind": name, "example": tokens[-1], "length": len(tokens[-1]), "random bits": bits,
                     "distinct": len(set(tokens)), "shared characters": _common_positions(tokens),
                     "guesses to find one": guesses})
    r.delete(key)
    return rows


def token_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["generator", "example", "length", "random bits", "distinct of 1000", "same in all (no dashes)",
                  "guesses to find one"],
                 [[x["kind"], x["example"], x["length"], x["random bits"], x["distinct"], x["shared characters"],
                   "-" if x["guesses to find one"] is None else x["guesses to find one"]] for x in rows],
                 title="1,000 session ids from each generator")
