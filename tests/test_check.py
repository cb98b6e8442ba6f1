"""Learner-facing checks: each passes on the right state and fails with expected vs actual."""

from __future__ import annotations

import pytest

from redistutor import check, set_options, trace
from redistutor.events import EventLog
from redistutor.exceptions import CheckFailed


def fails(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        fn(*args, show=False, **kwargs)
    return str(info.value)


def test_key_equals(r):
    r.set("n", 3)
    r.hset("h", mapping={"a": 1})
    r.rpush("l", "x", "y")
    r.zadd("z", {"m": 2})
    assert check.key_equals(r, "n", 3, show=False).passed
    check.key_equals(r, "h", {"a": 1}, show=False)
    check.key_equals(r, "l", ["x", "y"], show=False)
    check.key_equals(r, "z", {"m": 2}, show=False)
    assert fails(check.key_equals, r, "n", 4) == "✗ `n` equals 4\n  expected: '4'\n  actual:   '3'"
    assert "actual:   'key does not exist'" in fails(check.key_equals, r, "missing", "x")
    assert "actual:   ['x', 'y']" in fails(check.key_equals, r, "l", ["y", "x"])


def test_key_equals_inside_a_server_namespace(redis_server, r):
    r.set(redis_server.key("greeting"), "hi")
    check.key_equals(redis_server, "greeting", "hi", show=False)


def test_ttl_between(r):
    r.set("s", 1, ex=30)
    r.set("forever", 1)
    check.ttl_between(r, "s", 1, 30, show=False)
    assert fails(check.ttl_between, r, "forever", 1, 30).endswith("actual:   'no TTL (the key never expires)'")
    assert fails(check.ttl_between, r, "gone", 1, 30).endswith("actual:   'key does not exist'")
    assert "expected: '40..60 s'" in fails(check.ttl_between, r, "s", 40, 60)


def test_type_is_and_exists(r):
    r.sadd("s", "a")
    check.type_is(r, "s", "set", show=False)
    assert fails(check.type_is, r, "s", "list") == "✗ `s` is a list\n  expected: 'list'\n  actual:   'set'"
    assert "actual:   'key does not exist'" in fails(check.type_is, r, "nope", "hash")
    check.key_exists(r, "s", show=False)
    check.key_exists(r, "nope", False, show=False)
    assert "actual:   'missing'" in fails(check.key_exists, r, "nope")


def test_max_concurrent():
    ok, bad = EventLog(), EventLog()
    for t, a, k in [(0, "w1", "acquire"), (1, "w1", "release"), (2, "w2", "acquire"), (3, "w2", "release")]:
        ok.record(a, k, t=t)
    for t, a, k in [(0, "w1", "acquire"), (1, "w2", "acquire"), (2, "w1", "release"), (3, "w2", "release")]:
        bad.record(a, k, t=t)
    check.max_concurrent(ok, 1, show=False)
    assert fails(check.max_concurrent, bad, 1) == (
        "✗ at most 1 holder at a time\n  expected: '≤ 1'\n  actual:   '2 at once (w1 & w2)'")
    check.max_concurrent(bad, 2, show=False)


def test_trace_checks(r):
    with trace(r) as t:
        r.get("k")
        r.set("k", 1)
    check.commands_were(t, ["get", "set"], show=False)
    check.round_trips(t, 2, show=False)
    assert "actual:   ['GET', 'SET']" in fails(check.commands_were, t, ["SET"])
    assert fails(check.round_trips, t, 1) == "✗ 1 round trip\n  expected: 1\n  actual:   2"


def test_verdict_renders_as_text_and_html(r, capsys):
    r.set("k", "v")
    assert check.key_equals(r, "k", "v") is None  # outside IPython it prints its verdict
    assert capsys.readouterr().out == "✓ `k` equals 'v'\n"
    v = check.key_equals(r, "k", "v", show=False)
    with set_options(display="html"):
        assert "✓" in v._repr_html_() and "<pre>" not in v._repr_html_()
    with set_options(display="text"):
        assert v._repr_html_() is None  # text mode: the verdict is plain text only


def test_every_verdict_honours_text_mode(r):
    """In text mode a displayed verdict (a check, an exercise's ✓/✗/○) carries text/plain only."""
    from IPython.core.formatters import DisplayFormatter

    from redistutor.check import Exercise, expect

    r.set("k", "v")
    ex = Exercise("demo", lambda answer: expect(answer == 1, "answer is 1", expected=1, actual=answer),
                  hints=["one"], solution="1")
    failed = check.Verdict("`k` equals 'w'", False, "w", "v")
    shown = [check.key_equals(r, "k", "v", show=False), failed, ex.evaluate(1), ex.evaluate(2), ex.evaluate(None)]
    fmt = DisplayFormatter()
    for obj in shown:
        with set_options(display="text"):
            data, _ = fmt.format(obj)
            assert set(data) == {"text/plain"}, obj
        with set_options(display="html"):
            data, _ = fmt.format(obj)
            assert set(data) == {"text/plain", "text/html"} and "<div" in data["text/html"]


def test_long_failure_messages_are_shown_whole_and_wrap(r):
    from redistutor.check import Exercise, expect

    long = "the value you stored " + "is much too long " * 20 + "END"
    ex = Exercise("demo", lambda answer: expect(False, long), hints=["h"], solution="")
    result = ex.evaluate(1)
    assert repr(result).endswith("END")
    with set_options(display="html"):
        page = result._repr_html_()
    assert "END" in page and "white-space:pre-wrap" in page


def test_hint_and_solution_are_shown_once_not_printed_and_returned(capsys):
    from redistutor.check import Exercise

    ex = Exercise("demo", lambda answer: None, hints=["gentle", "specific"], solution="def f():\n    return 1\n")
    hint, solution = ex.hint(2), ex.solution()
    assert capsys.readouterr().out == ""  # before: printed, and returned, so the cell showed it twice
    assert repr(hint) == str(hint) == "Hint 2/2: specific" and "rt-note" in hint._html()
    assert str(solution) == "def f():\n    return 1" and repr(solution).startswith("demo: a reference solution")
    assert repr(ex.hint(9)) == "Hint 2/2: specific"  # past the last hint: the last one


def test_max_concurrent_counts_and_at_most_concurrent_checks():
    from redistutor import max_concurrent
    from redistutor.events import EventLog
    from redistutor.timeline import Timeline

    log = EventLog()
    for actor in ("a", "b"):
        log.record(actor, "acquire")
    log.record("a", "release")
    log.record("b", "release")
    assert max_concurrent(log) == 2 and Timeline(log).max_concurrent == 2  # the number, both ways
    assert check.at_most_concurrent(log, 2, show=False).passed
    with pytest.raises(CheckFailed):
        check.at_most_concurrent(log, 1)  # the check: it fails, with expected vs actual
    assert check.max_concurrent is check.at_most_concurrent  # the older name of the check
