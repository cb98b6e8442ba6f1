"""Self-tests of the write-through exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import json

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import write_through as ex

# -- exercise 1: the write path -----------------------------------------------------------------


def test_write_path_reference_passes(r, db):
    assert ex.write_path(r, db).evaluate(ex.write_user_name).outcome == CORRECT


def test_write_path_starter_is_not_attempted(r, db):
    def starter(r, db, key, user_id, name):
        raise NotImplementedError

    assert ex.write_path(r, db).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.write_path(r, db).check(starter)  # shows "not attempted" and does not raise


def test_write_path_cache_first_fails(r, db):
    def cache_first(r, db, key, user_id, name):
        row = db.get_user(user_id)
        r.set(key, json.dumps({**row, "name": name}))
        db.update_user(user_id, name=name)

    res = ex.write_path(r, db).evaluate(cache_first)
    assert res.outcome == INCORRECT and "SET, then UPDATE" in res.message


def test_write_path_delete_instead_of_set_fails(r, db):
    def cache_aside(r, db, key, user_id, name):
        db.update_user(user_id, name=name)
        r.delete(key)

    res = ex.write_path(r, db).evaluate(cache_aside)
    assert res.outcome == INCORRECT and "next read is a hit" in res.message


def test_write_path_db_only_fails(r, db):
    def db_only(r, db, key, user_id, name):
        db.update_user(user_id, name=name)

    res = ex.write_path(r, db).evaluate(db_only)
    assert res.outcome == INCORRECT and "holds the new row" in res.message


def test_write_path_swallowing_db_error_and_caching_fails(r, db):
    def swallow(r, db, key, user_id, name):
        try:
            rows = db.execute("UPDATE users SET name = ?, version = version + 1 WHERE id = ? "
                              "RETURNING id, name, email, version", (name, user_id))
            row = dict(zip(("id", "name", "email", "version"), rows[0]))
        except Exception:
            row = {"id": user_id, "name": name, "email": "?", "version": 0}
        r.set(key, json.dumps(row))
        return row

    res = ex.write_path(r, db).evaluate(swallow)
    assert res.outcome == INCORRECT and "keeps the last committed row" in res.message


def test_write_path_separate_select_after_the_write_fails(r, db):
    """The answer the old hint taught: UPDATE, then read the row back with a separate SELECT.
    Another request commits in between, so the SELECT returns (and caches) that request's row."""

    def read_back(r, db, key, user_id, name):
        db.update_user(user_id, name=name)
        row = db.get_user(user_id)
        r.set(key, json.dumps(row), ex=3600)
        return row

    res = ex.write_path(r, db).evaluate(read_back)
    assert res.outcome == INCORRECT and "YOUR update committed" in res.message


def test_write_path_select_before_the_write_fails(r, db):
    def read_first(r, db, key, user_id, name):
        old = db.get_user(user_id)
        version = db.update_user(user_id, name=name)
        row = {**old, "name": name, "version": version}
        r.set(key, json.dumps(row))
        return row

    res = ex.write_path(r, db).evaluate(read_first)
    assert res.outcome == INCORRECT and "one DB statement" in res.message


def test_write_path_hints_do_not_teach_a_read_back(r, db):
    hints = " ".join(ex.write_path(r, db).hints)
    assert "RETURNING" in hints and "db.get_user" not in hints


# -- exercise 2: the versioned set --------------------------------------------------------------


def test_versioned_set_reference_passes(r):
    assert ex.versioned_set(r).evaluate(ex.set_if_newer).outcome == CORRECT


def test_versioned_set_starter_is_not_attempted(r):
    def starter(r, key, row):
        raise NotImplementedError

    assert ex.versioned_set(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_versioned_set_plain_set_fails(r):
    def plain(r, key, row):
        r.set(key, json.dumps(row))
        return True

    res = ex.versioned_set(r).evaluate(plain)
    assert res.outcome == INCORRECT and "writing version 9 when Redis held version 10" in res.message


def test_versioned_set_nx_fails(r):
    def only_if_missing(r, key, row):
        return bool(r.set(key, json.dumps(row), nx=True))

    res = ex.versioned_set(r).evaluate(only_if_missing)
    assert res.outcome == INCORRECT and "writing version 10 when Redis held version 9" in res.message


def test_versioned_set_string_compare_in_lua_fails(r):
    script = """
    local cur = redis.call('GET', KEYS[1])
    if cur and tostring(cjson.decode(cur)['version']) >= ARGV[1] then return 0 end
    redis.call('SET', KEYS[1], ARGV[2])
    return 1
    """

    def as_strings(r, key, row):  # "9" >= "10" is true for strings: version 10 is refused
        return bool(r.eval(script, 1, key, row["version"], json.dumps(row)))

    res = ex.versioned_set(r).evaluate(as_strings)
    assert res.outcome == INCORRECT and "holds version 10" in res.message


# -- exercise 3: signup (a new case) ------------------------------------------------------------


def test_signup_reference_passes(r, db):
    assert ex.signup(r, db).evaluate(ex.create_user).outcome == CORRECT


def test_signup_db_only_fails(r, db):
    def db_only(r, db, prefix, name, email):
        rows = db.execute("INSERT INTO users (name, email, version) VALUES (?, ?, 1) "
                          "RETURNING id, name, email, version", (name, email))
        return dict(zip(("id", "name", "email", "version"), rows[0]))

    res = ex.signup(r, db).evaluate(db_only)
    assert res.outcome == INCORRECT and "first read is a hit" in res.message


def test_signup_select_after_insert_fails(r, db):
    def read_back(r, db, prefix, name, email):
        db.execute("INSERT INTO users (name, email, version) VALUES (?, ?, 1)", (name, email))
        uid, n, e, v = db.execute("SELECT id, name, email, version FROM users WHERE email = ?", (email,))[0]
        row = {"id": uid, "name": n, "email": e, "version": v}
        r.set(f"{prefix}:{uid}", json.dumps(row))
        return row

    res = ex.signup(r, db).evaluate(read_back)
    assert res.outcome == INCORRECT and "no separate SELECT" in res.message


def test_signup_cache_first_fails(r, db):
    def cache_first(r, db, prefix, name, email):
        uid = 1000 + len(list(r.scan_iter(f"{prefix}:*")))
        row = {"id": uid, "name": name, "email": email, "version": 1}
        r.set(f"{prefix}:{uid}", json.dumps(row))
        db.execute("INSERT INTO users (id, name, email, version) VALUES (?, ?, ?, 1)", (uid, name, email))
        return row

    res = ex.signup(r, db).evaluate(cache_first)
    assert res.outcome == INCORRECT and "nothing new appears in Redis" in res.message
