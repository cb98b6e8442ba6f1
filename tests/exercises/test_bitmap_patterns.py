"""Self-tests of the bitmap exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import bitmap_patterns as ex


def test_claim_reference_passes(r):
    assert ex.claim_exercise(r).evaluate(ex.claim_slot).outcome == CORRECT


def test_claim_starter_is_not_attempted(r):
    def starter(r, key, n):
        raise NotImplementedError

    assert ex.claim_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_claim_ignoring_setbits_reply_fails(r):
    def claim(r, key, n):   # BITPOS then SETBIT, trusting that nobody came in between
        slot = r.bitpos(key, 0, 0, -1)
        slot = r.strlen(key) * 8 if slot == -1 else slot
        if slot >= n:
            return None
        r.setbit(key, slot, 1)
        return slot

    res = ex.claim_exercise(r).evaluate(claim)
    assert res.outcome == INCORRECT and "old bit" in res.message


def test_claim_without_a_range_on_a_full_byte_fails(r):
    def claim(r, key, n):   # no range: trusts BITPOS's "bit after the string", no bound check
        while True:
            slot = r.bitpos(key, 0)
            if r.setbit(key, slot, 1) == 0:
                return slot

    res = ex.claim_exercise(r).evaluate(claim)
    assert res.outcome == INCORRECT and "None" in res.message


def test_claim_bounded_by_the_string_not_n_fails(r):
    def claim(r, key, n):   # treats BITPOS's -1 as "full" even when n reaches past the string
        while True:
            slot = r.bitpos(key, 0, 0, -1)
            if slot == -1 or slot >= n:
                return None
            if r.setbit(key, slot, 1) == 0:
                return slot

    res = ex.claim_exercise(r).evaluate(claim)
    assert res.outcome == INCORRECT


def test_churn_reference_passes(r):
    assert ex.churn_exercise(r).evaluate(ex.churned).outcome == CORRECT


def test_churn_starter_is_not_attempted(r):
    def starter(r, before, after):
        raise NotImplementedError

    assert ex.churn_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_churn_with_bitop_not_fails_on_a_shorter_after(r):
    def churned(r, before, after):   # NOT after is only as long as after: the AND drops the tail
        r.bitop("NOT", "ex2:not", after)
        r.bitop("AND", "ex2:tmp", before, "ex2:not")
        n = r.bitcount("ex2:tmp")
        r.delete("ex2:not", "ex2:tmp")
        return n

    res = ex.churn_exercise(r).evaluate(churned)
    assert res.outcome == INCORRECT and "shorter" in res.message


def test_churn_downloading_the_bitmaps_fails(r):
    def churned(r, before, after):
        try:
            r.get(before)              # downloads the whole bitmap (and cannot decode it)
        except UnicodeDecodeError:
            pass
        return ex.churned(r, before, after)

    res = ex.churn_exercise(r).evaluate(churned)
    assert res.outcome == INCORRECT and "download" in res.message


def test_churn_leaving_a_temporary_key_fails(r):
    def churned(r, before, after):
        r.bitop("AND", "ex2:both", before, after)
        return r.bitcount(before) - r.bitcount("ex2:both")

    res = ex.churn_exercise(r).evaluate(churned)
    assert res.outcome == INCORRECT and "temporary" in res.message


def test_try_it_is_checked_against_the_server(r):
    assert ex.smaller_structure(r, 1_000).evaluate("set").outcome == CORRECT
    assert ex.smaller_structure(r, 1_000).evaluate("bitmap").outcome == INCORRECT
    assert ex.smaller_structure(r, 50_000).evaluate("bitmap").outcome == CORRECT
    assert ex.smaller_structure(r, 50_000).evaluate(None).outcome == NOT_ATTEMPTED


def test_claim_in_one_lua_script_passes(r):
    script = """
    local slot = redis.call('BITPOS', KEYS[1], 0, 0, -1)
    if slot == -1 then slot = redis.call('STRLEN', KEYS[1]) * 8 end
    if slot >= tonumber(ARGV[1]) then return -1 end
    redis.call('SETBIT', KEYS[1], slot, 1)
    return slot
    """

    def claim(r, key, n):
        slot = r.eval(script, 1, key, n)
        return None if slot == -1 else slot

    assert ex.claim_exercise(r).evaluate(claim).outcome == CORRECT


def test_claim_that_never_stops_at_n_fails(r):
    def claim(r, key, n):   # ignores n: hands out slot 10, 11, ...
        while True:
            slot = r.bitpos(key, 0, 0, -1)
            slot = r.strlen(key) * 8 if slot == -1 else slot
            if r.setbit(key, slot, 1) == 0:
                return slot

    res = ex.claim_exercise(r).evaluate(claim)
    assert res.outcome == INCORRECT and "None" in res.message
