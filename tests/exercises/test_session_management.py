"""Self-tests of the session exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import secrets

import redis

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import session_management as ex

# -- exercise 1: issue_csrf ------------------------------------------------------------------------


def test_csrf_reference_passes(r):
    assert ex.csrf_exercise(r).evaluate(ex.issue_csrf).outcome == CORRECT


def test_csrf_starter_is_not_attempted(r):
    def starter(r, key, ttl_ms):
        raise NotImplementedError

    assert ex.csrf_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_csrf_with_watch_passes(r):
    def issue(r, key, ttl_ms):
        token = secrets.token_urlsafe(32)
        with r.pipeline() as p:
            try:
                p.watch(key)
                if not p.exists(key):
                    return None
                p.multi()
                p.hset(key, "csrf", token)
                p.hpexpire(key, ttl_ms, "csrf")
                p.execute()
                return token
            except redis.WatchError:
                return None

    assert ex.csrf_exercise(r).evaluate(issue).outcome == CORRECT


def test_csrf_that_expires_the_whole_key_fails(r):
    def issue(r, key, ttl_ms):   # a key-wide EXPIRE: cuts the session to the token's life
        if not r.exists(key):
            return None
        token = secrets.token_urlsafe(32)
        r.hset(key, "csrf", token)
        r.pexpire(key, ttl_ms)
        return token

    res = ex.csrf_exercise(r).evaluate(issue)
    assert res.outcome == INCORRECT and "field" in res.message


def test_csrf_without_field_ttl_fails(r):
    script = ("if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
              "redis.call('HSET', KEYS[1], 'csrf', ARGV[1]) return 1")

    def issue(r, key, ttl_ms):   # safe against expiry, but the token never expires
        token = secrets.token_urlsafe(32)
        return token if r.eval(script, 1, key, token) == 1 else None

    res = ex.csrf_exercise(r).evaluate(issue)
    assert res.outcome == INCORRECT and "HPTTL" in res.message


def test_csrf_that_resurrects_a_gone_session_fails(r):
    def issue(r, key, ttl_ms):   # no existence check: HSET creates the key
        token = secrets.token_urlsafe(32)
        with r.pipeline() as p:
            p.hset(key, "csrf", token)
            p.hpexpire(key, ttl_ms, "csrf")
            p.execute()
        return token

    res = ex.csrf_exercise(r).evaluate(issue)
    assert res.outcome == INCORRECT and "not created" in res.message


def test_csrf_check_then_write_in_two_round_trips_fails(r):
    def issue(r, key, ttl_ms):   # EXISTS, then HSET: the session can expire in between
        if not r.exists(key):
            return None
        token = secrets.token_urlsafe(32)
        r.hset(key, "csrf", token)
        r.hpexpire(key, ttl_ms, "csrf")
        return token

    res = ex.csrf_exercise(r).evaluate(issue)
    assert res.outcome == INCORRECT and "fragment" in res.message


def test_csrf_with_a_short_or_repeated_token_fails(r):
    counter = iter(range(10**6))

    def short(r, key, ttl_ms):
        return r.eval(ex.ISSUE_CSRF, 1, key, str(next(counter)), ttl_ms)

    def same(r, key, ttl_ms):
        return r.eval(ex.ISSUE_CSRF, 1, key, "x" * 43, ttl_ms)

    assert "128 random bits" in ex.csrf_exercise(r).evaluate(short).message
    assert "new one" in ex.csrf_exercise(r).evaluate(same).message


def test_csrf_that_drops_other_fields_fails(r):
    def issue(r, key, ttl_ms):
        token = ex.issue_csrf(r, key, ttl_ms)
        if token:
            r.hdel(key, "theme")
        return token

    res = ex.csrf_exercise(r).evaluate(issue)
    assert res.outcome == INCORRECT and "other fields" in res.message


# -- exercise 2: logout_others ---------------------------------------------------------------------


def test_logout_others_reference_passes(r):
    assert ex.logout_others_exercise(r).evaluate(ex.logout_others).outcome == CORRECT


def test_logout_others_starter_is_not_attempted(r):
    def starter(r, prefix, user_id, keep_sid):
        raise NotImplementedError

    assert ex.logout_others_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_logout_others_with_srem_and_no_watch_passes(r):
    def logout_others(r, prefix, user_id, keep_sid):   # SREM exactly what was read: a racing login stays listed
        index = f"{prefix}:user:{user_id}"
        others = [s for s in r.smembers(index) if s != keep_sid]
        if others:
            r.delete(*[f"{prefix}:{s}" for s in others])
            r.srem(index, *others)
        return len(others)

    assert ex.logout_others_exercise(r).evaluate(logout_others).outcome == CORRECT


def test_logout_others_deleting_the_current_session_fails(r):
    def logout_others(r, prefix, user_id, keep_sid):
        from redistutor.patterns.session_management import Sessions
        return Sessions(r, prefix=prefix).logout_everywhere(user_id)

    res = ex.logout_others_exercise(r).evaluate(logout_others)
    assert res.outcome == INCORRECT and "current session" in res.message


def test_logout_others_rebuilding_the_index_fails_with_a_racing_login(r):
    def logout_others(r, prefix, user_id, keep_sid):   # DEL the set and SADD the kept id: drops the new login
        index = f"{prefix}:user:{user_id}"
        others = [s for s in r.smembers(index) if s != keep_sid]
        if others:
            r.delete(*[f"{prefix}:{s}" for s in others])
        r.delete(index)
        r.sadd(index, keep_sid)
        return len(others)

    res = ex.logout_others_exercise(r).evaluate(logout_others)
    assert res.outcome == INCORRECT and "login landed" in res.message


def test_logout_others_leaving_stale_ids_fails(r):
    def logout_others(r, prefix, user_id, keep_sid):   # removes only the ids of live sessions
        index = f"{prefix}:user:{user_id}"
        others = [s for s in r.smembers(index) if s != keep_sid and r.exists(f"{prefix}:{s}")]
        if others:
            r.delete(*[f"{prefix}:{s}" for s in others])
            r.srem(index, *others)
        return len(others)

    res = ex.logout_others_exercise(r).evaluate(logout_others)
    assert res.outcome == INCORRECT and "stale" in res.message


def test_logout_others_touching_another_user_fails(r):
    def logout_others(r, prefix, user_id, keep_sid):
        n = ex.logout_others(r, prefix, user_id, keep_sid)
        for sid in r.smembers(f"{prefix}:user:bob"):
            r.delete(f"{prefix}:{sid}")
        return n

    res = ex.logout_others_exercise(r).evaluate(logout_others)
    assert res.outcome == INCORRECT and "another user" in res.message


# -- try it ------------------------------------------------------------------------------------------


def test_try_it_is_checked_against_the_server(r):
    assert ex.survives_gap(r, 20).evaluate(True).outcome == CORRECT
    assert ex.survives_gap(r, 20).evaluate(False).outcome == INCORRECT
    assert ex.survives_gap(r, 700).evaluate(False).outcome == CORRECT
    assert ex.survives_gap(r, 700).evaluate(True).outcome == INCORRECT
    assert ex.survives_gap(r, 20).evaluate(None).outcome == NOT_ATTEMPTED
    assert ex.survives_gap(r, 20).evaluate(1).outcome == INCORRECT      # a bool, please
