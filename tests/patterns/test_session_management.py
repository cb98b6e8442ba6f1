"""The session patterns on a real Redis: sliding TTL with a hard cap, field updates that never
resurrect, and "log out everywhere" that survives a racing login."""

from __future__ import annotations

import json
import time

import pytest

from redistutor.patterns.session_management import Sessions, SessionStore
from redistutor.scenarios import session_management as sc
from redistutor.trace import trace

URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_defaults():
    s = SessionStore.__new__(SessionStore)
    SessionStore.__init__(s, _FakeRegister())
    assert (s.prefix, s.idle_ms, s.max_ms) == ("session", 1_800_000, 43_200_000)


class _FakeRegister:
    """Only register_script is called by __init__ (no command is sent)."""

    def register_script(self, script):
        return script


def test_create_writes_fields_ttl_and_index_in_one_round_trip(r):
    store = SessionStore(r, prefix="s", idle_ms=30_000, max_ms=600_000)
    before = int(time.time() * 1000)
    with trace(r) as t:
        sid = store.create(user_id="ada", theme="dark")
    after = int(time.time() * 1000)
    assert t.round_trips == 1 and t.names() == ["MULTI", "HSET", "PEXPIRE", "SADD", "PEXPIRE", "EXEC"]
    data = r.hgetall(f"s:{sid}")
    assert data["user_id"] == "ada" and data["theme"] == "dark"
    assert before + 600_000 <= int(data["expires_at"]) <= after + 600_000
    assert 29_000 < r.pttl(f"s:{sid}") <= 30_000
    assert r.smembers("s:user:ada") == {sid} and 599_000 < r.pttl("s:user:ada") <= 600_000
    assert len(sid) == 43 and set(sid) <= URLSAFE


def test_user_id_wins_over_data(r):
    store = SessionStore(r, prefix="s")
    sid = store.create(user_id="ada", expires_at="0")
    assert store.get(sid)["user_id"] == "ada"   # expires_at from data is replaced by the real deadline


def test_ids_are_distinct(r):
    store = SessionStore(r, prefix="s")
    sids = {store.create(user_id="ada") for _ in range(50)}
    assert len(sids) == 50 and r.scard("s:user:ada") == 50


def test_idle_ttl_never_exceeds_the_hard_lifetime(r):
    store = SessionStore(r, prefix="s", idle_ms=60_000, max_ms=5_000)
    sid = store.create(user_id="ada")
    assert 4_000 < r.pttl(f"s:{sid}") <= 5_000
    assert store.get(sid) is not None and 4_000 < r.pttl(f"s:{sid}") <= 5_000


def test_get_returns_fields_and_slides_the_ttl(r):
    store = SessionStore(r, prefix="s", idle_ms=30_000, max_ms=600_000)
    sid = store.create(user_id="ada", cart="[]")
    store.get(sid)                       # loads the script
    r.pexpire(f"s:{sid}", 1_000)
    with trace(r) as t:
        data = store.get(sid)
    assert t.names() == ["EVALSHA"] and t.round_trips == 1
    assert data == {"user_id": "ada", "cart": "[]", "expires_at": data["expires_at"]}
    assert 29_000 < r.pttl(f"s:{sid}") <= 30_000


def test_get_is_capped_by_the_deadline(r):
    store = SessionStore(r, prefix="s", idle_ms=30_000, max_ms=600_000)
    sid = store.create(user_id="ada")
    r.hset(f"s:{sid}", "expires_at", int(time.time() * 1000) + 2_000)
    assert store.get(sid) is not None
    assert 1_000 < r.pttl(f"s:{sid}") <= 2_000          # min(idle, left), not the idle TTL


def test_get_after_the_deadline_deletes_the_session(r):
    store = SessionStore(r, prefix="s", idle_ms=30_000, max_ms=600_000)
    sid = store.create(user_id="ada")
    r.hset(f"s:{sid}", "expires_at", int(time.time() * 1000) - 1)
    assert store.get(sid) is None and not r.exists(f"s:{sid}")
    r.hset(f"s:{sid}", mapping={"user_id": "ada", "expires_at": int(time.time() * 1000)})
    assert store.get(sid) is None and not r.exists(f"s:{sid}")   # exactly at the deadline: over


def test_get_of_a_missing_or_fragment_session_is_none(r):
    store = SessionStore(r, prefix="s")
    assert store.get("nope") is None and not r.exists("s:nope")
    r.hset("s:frag", "theme", "dark")                  # a resurrected fragment: no expires_at
    assert store.get("frag") is None and not r.exists("s:frag")


def test_sliding_keeps_an_active_session_and_drops_an_idle_one(r):
    store = SessionStore(r, prefix="s", idle_ms=600, max_ms=60_000)
    active, idle = store.create(user_id="a"), store.create(user_id="b")
    for _ in range(10):                                 # 10 x 100 ms: well past one idle TTL
        assert store.get(active) is not None
        time.sleep(0.1)
    assert store.get(active) is not None and store.get(idle) is None


def test_update_writes_only_the_given_fields_and_keeps_the_ttl(r):
    store = Sessions(r, prefix="s", idle_ms=30_000, max_ms=600_000)
    sid = store.create(user_id="ada", theme="light", cart="[]")
    r.pexpire(f"s:{sid}", 10_000)
    assert store.update(sid, theme="dark", locale="fr") is True
    data = r.hgetall(f"s:{sid}")
    assert data["theme"] == "dark" and data["locale"] == "fr" and data["cart"] == "[]" and data["user_id"] == "ada"
    assert 9_000 < r.pttl(f"s:{sid}") <= 10_000


def test_update_never_resurrects(r):
    store = Sessions(r, prefix="s")
    assert store.update("gone", theme="dark") is False and not r.exists("s:gone")


def test_update_and_set_fields_keep_concurrent_changes(r):
    store = Sessions(r, prefix="s")
    sid = store.create(user_id="ada", theme="light", cart="[]")
    store.update(sid, theme="dark")
    store.update(sid, cart=json.dumps(["book"]))
    assert store.get(sid)["theme"] == "dark" and json.loads(store.get(sid)["cart"]) == ["book"]


def test_sessions_passes_settings_to_the_store(r):
    store = Sessions(r, prefix="p", idle_ms=1234, max_ms=99_999)
    assert (store.prefix, store.idle_ms, store.max_ms) == ("p", 1234, 99_999)


def test_logout_everywhere_deletes_every_session_and_the_index(r):
    store = Sessions(r, prefix="s")
    ada = [store.create(user_id="ada") for _ in range(3)]
    bob = store.create(user_id="bob")
    r.delete(f"s:{ada[0]}")                             # idled out: still listed
    with trace(r) as t:
        n = store.logout_everywhere("ada")
    assert n == 3 and not any(r.exists(f"s:{s}") for s in ada) and not r.exists("s:user:ada")
    assert r.exists(f"s:{bob}") and r.smembers("s:user:bob") == {bob}
    assert t.names() == ["WATCH", "SMEMBERS", "MULTI", "DEL", "EXEC", "UNWATCH"][:len(t.names())]
    assert store.logout_everywhere("nobody") == 0


def test_logout_everywhere_retries_when_a_login_lands_in_the_middle(r):
    race = sc.logout_race(r, Sessions, "lo")
    assert race["pattern: WATCH, SMEMBERS, MULTI/EXEC"] == {"old alive": 0, "new alive": False, "new indexed": False}
    assert race["usual: SMEMBERS, DEL, DEL"] == {"old alive": 0, "new alive": True, "new indexed": False}


def test_the_notebooks_races(r):
    race = sc.lost_update_race(r, "lu")
    assert race["string, GET + SET"]["theme"] == "light" and race["string, GET + SET"]["ttl"] == -1
    assert race["string, GET + SET KEEPTTL"]["ttl"] > 0
    assert race["hash, HSET per field"]["theme"] == "dark" and race["hash, HSET per field"]["cart"] == ["book"]
    assert race["JSON document, path updates"]["theme"] == "dark"
    zombie = sc.resurrect_race(r, Sessions(r, prefix="z"))
    assert zombie["naive HSET"]["ttl"] == -1 and zombie["Sessions.update"]["wrote"] is False


def test_index_outlives_busy_sessions(r):
    res = sc.index_ttl_trial(r, Sessions, "ix", idle_ms=400, index_ms=600)
    assert res["fixed index TTL"]["session alive after"] and not res["index TTL = hard lifetime"]["session alive after"]


@pytest.mark.parametrize("fields", [5, 10, 40])
def test_memory_order(r, fields):
    (row,) = sc.memory_sweep(r, "m", sizes=(fields,))
    assert row["payload"] < row["hash"] < row["JSON string"] < row["JSON document"]
