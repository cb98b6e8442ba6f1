"""Exercises for notebooks/27-redis-as-primary-database.ipynb.

Try it. ``snapshot_prediction``: an RDB-only server SAVEs after write ``snapshot_at`` and is
   killed with SIGKILL after 1,000 acknowledged writes; predict how many survive the restart.
1. ``change_email``: ``change_email(r, prefix, uid, new_email) -> bool``: a new case of keeping a
   hand-made unique index in step: move a user's email index entry atomically, refusing an email
   that belongs to someone else.
2. ``repair_index``: ``repair(r, prefix) -> int``: after a crash left dangling index entries, remove
   exactly those (never an entry whose record exists) and say how many.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import redis

from ..check import Exercise, expect
from ..patterns.redis_as_primary_database import Users
from ..timeline import run_threads

# -- reference solutions (self-tested in tests/exercises/test_redis_as_primary_database.py) ------

CHANGE_EMAIL_LUA = """
-- KEYS: the record, the old email's entry, the new email's entry. ARGV: id, old email, new email
if redis.call('HGET', KEYS[1], 'email') ~= ARGV[2] then return -1 end   -- changed: re-read
if ARGV[2] == ARGV[3] then return 1 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX') == false then return 0 end  -- taken
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'email', ARGV[3])
return 1
"""


def change_email(r: redis.Redis, prefix: str, uid: str, new_email: str) -> bool:
    while (old := r.hget(f"{prefix}:{uid}", "email")) is not None:
        keys = [f"{prefix}:{uid}", f"{prefix}:email:{old}", f"{prefix}:email:{new_email}"]
        done = r.eval(CHANGE_EMAIL_LUA, 3, *keys, uid, old, new_email)
        if done != -1:
            return done == 1
    return False


REPAIR_LUA = """
-- KEYS: the record an index entry points at, the index key. ARGV: the member for a sorted set,
-- or '' for an email entry (a string). Removes the entry only while the record is missing.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[1] == '' then return redis.call('DEL', KEYS[2]) end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""


def repair(r: redis.Redis, prefix: str) -> int:
    removed = 0
    for key in r.scan_iter(f"{prefix}:email:*", count=1000):
        uid = r.get(key)
        if uid is not None:
            removed += int(cast(Any, r.eval(REPAIR_LUA, 2, f"{prefix}:{uid}", key, "")))
    for uid in r.zrange(f"{prefix}s:by:age", 0, -1):
        removed += int(cast(Any, r.eval(REPAIR_LUA, 2, f"{prefix}:{uid}", f"{prefix}s:by:age", uid)))
    return removed


# -- helpers ------------------------------------------------------------------------------------


def _clear(r: redis.Redis, prefix: str) -> None:
    keys = list(r.scan_iter(f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


def _state(r: redis.Redis, prefix: str, uid: str) -> tuple[Any, Any]:
    email = r.hget(f"{prefix}:{uid}", "email")
    return email, r.get(f"{prefix}:email:{email}")


def _entries(r: redis.Redis, prefix: str) -> dict[str, Any]:
    return {str(k).split(":email:", 1)[1]: r.get(k) for k in r.scan_iter(f"{prefix}:email:*", count=1000)}


# -- exercises ----------------------------------------------------------------------------------


def snapshot_prediction(snapshot_at: int, prefix: str = "try") -> Exercise:
    """Try it: how many sequence numbers survive when an RDB-only server SAVEs after write
    ``snapshot_at`` and is killed after 1,000 acknowledged writes."""
    from ..scenarios.redis_as_primary_database import loss_trial

    def checker(answer) -> None:
        got = loss_trial("rdb", kill_after=1000, snapshot_at=snapshot_at)
        expect(answer == got["kept"], f"the server acknowledged {got['acknowledged']} writes and kept "
               f"{got['kept']} across the kill -9", expected=got["kept"], actual=answer)

    return Exercise(
        f"RDB snapshot after write {snapshot_at}", checker,
        hints=["An RDB file is a picture of memory at the moment of the SAVE; nothing written after "
               "it is on disk, however many writes were acknowledged.",
               "The writes after the SAVE (up to the kill) are lost; the ones up to it survive."],
        solution="prediction = snapshot_at   # for 0 < snapshot_at < 1000",
        reference=None,
    )


def change_email_exercise(r: redis.Redis, prefix: str = "ex1:user") -> Exercise:
    """Exercise 1: ``change_email(r, prefix, uid, new_email) -> bool``."""

    def checker(answer) -> None:
        _clear(r, prefix)
        users = Users(r, prefix)
        users.add("1", "ann@example.com", 30)
        users.add("2", "bob@example.com", 40)
        ok = answer(r, prefix, "1", "ann@work.example")
        expect(ok is True or ok == 1, "ann may take a free email", expected=True, actual=ok)
        expect(_state(r, prefix, "1") == ("ann@work.example", "1"),
               "the record and the new email's entry both say ann@work.example -> 1",
               expected=("ann@work.example", "1"), actual=_state(r, prefix, "1"))
        expect(r.exists(f"{prefix}:email:ann@example.com") == 0, "the old email's entry is gone (else it "
               "points at a user who no longer has that email, and nobody can register it)",
               expected="no key", actual=r.get(f"{prefix}:email:ann@example.com"))
        taken = answer(r, prefix, "1", "bob@example.com")
        expect(not taken, "bob@example.com belongs to bob: the change is refused", expected=False, actual=taken)
        expect(_entries(r, prefix) == {"ann@work.example": "1", "bob@example.com": "2"}
               and _state(r, prefix, "2") == ("bob@example.com", "2"),
               "a refused change changes nothing: bob keeps his email and his entry",
               expected={"ann@work.example": "1", "bob@example.com": "2"}, actual=_entries(r, prefix))
        same = answer(r, prefix, "1", "ann@work.example")
        expect(_state(r, prefix, "1") == ("ann@work.example", "1"),
               "changing to the email the user already has keeps its entry (a SET then DEL of the "
               "same key deletes it)", expected=("ann@work.example", "1"), actual=_state(r, prefix, "1"))
        expect(same is True or same == 1, "changing to one's own email is allowed", expected=True, actual=same)
        ids = [str(i) for i in range(10, 18)]
        for uid in ids:
            users.add(uid, f"u{uid}@example.com", 20)
        wins = run_threads(lambda actor, _log: bool(answer(r, prefix, ids[int(actor.rsplit("-", 1)[1]) - 1],
                                                           "hot@example.com")), len(ids), timeout=30)
        winners = [u for u, w in zip(ids, wins) if w]
        expect(len(winners) == 1, "8 users claim hot@example.com at once: exactly one gets it",
               expected=1, actual=len(winners))
        owner = r.get(f"{prefix}:email:hot@example.com")
        records = {u: r.hget(f"{prefix}:{u}", "email") for u in ids}
        expect(owner == winners[0] and [u for u, e in records.items() if e == "hot@example.com"] == winners,
               "the entry and exactly one record say hot@example.com, the same user",
               expected=winners, actual={"entry": owner, "records": records})

    return Exercise(
        "change an email", checker,
        hints=["Three keys change together: the record's email field, the old email's entry and the "
               "new one's. Do it in one Lua script, and pass all three keys in KEYS.",
               "Read the old email first, then in the script: give up (-1, re-read) if the record no "
               "longer has it; if old == new there is nothing to do; SET the new entry with NX (nil: "
               "someone has it, return 0); then DEL the old entry and HSET the field."],
        solution=CHANGE_EMAIL_LUA + "\n" + inspect.getsource(change_email), reference=change_email,
    )


def repair_exercise(r: redis.Redis, prefix: str = "ex2:user") -> Exercise:
    """Exercise 2: ``repair(r, prefix) -> int``."""

    def seed() -> None:
        _clear(r, prefix)
        users = Users(r, prefix)
        for i in range(1, 9):
            users.add(str(i), f"u{i}@example.com", 20 + i)
        r.delete(f"{prefix}:2", f"{prefix}:5")                     # records gone, both entries left
        r.delete(f"{prefix}:7", f"{prefix}:email:u7@example.com")  # record and email gone, age left
        r.zrem(f"{prefix}s:by:age", "3")                           # a healthy record missing from one index

    def checker(answer) -> None:
        seed()
        n = answer(r, prefix)
        expect(n == 5, "5 dangling entries: the email and age entries of users 2 and 5, the age entry of 7",
               expected=5, actual=n)
        emails = sorted(_entries(r, prefix))
        want = [f"u{i}@example.com" for i in (1, 3, 4, 6, 8)]
        expect(emails == want, "every email entry whose record exists stays", expected=want, actual=emails)
        ages = sorted(cast(list, r.zrange(f"{prefix}s:by:age", 0, -1)), key=int)
        expect(ages == ["1", "4", "6", "8"], "the age index keeps exactly the users that exist (3 was not "
               "in it: repairing removes, it does not invent)", expected=["1", "4", "6", "8"], actual=ages)
        expect(all(r.exists(f"{prefix}:{i}") for i in (1, 3, 4, 6, 8)), "no record is deleted by a repair",
               expected=True, actual=False)
        again = answer(r, prefix)
        expect(again == 0, "a second repair finds nothing left to remove", expected=0, actual=again)

    return Exercise(
        "repair dangling index entries", checker,
        hints=["Walk both indexes (SCAN the email entries; ZRANGE the age index) and look up the record "
               "each entry points at.",
               "Remove an entry only while its record is missing, checked and removed in one step (a "
               "small Lua script: EXISTS, then DEL or ZREM), so a user added again meanwhile keeps it."],
        solution=REPAIR_LUA + "\n" + inspect.getsource(repair), reference=repair,
    )
