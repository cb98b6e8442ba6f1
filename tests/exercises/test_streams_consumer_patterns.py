"""Self-tests of the streams-consumer-patterns exercise checkers: the reference passes, known-wrong
answers fail with the message that names their mistake."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import streams_consumer_patterns as ex

# -- Try it ---------------------------------------------------------------------------------------


def test_trim_prediction_is_checked_against_the_server(r):
    for bound in (150, 1000, 1234):
        assert ex.trim_prediction(r, bound).evaluate(bound + 99).outcome == CORRECT
    assert ex.trim_prediction(r, 1000).evaluate(1000).outcome == INCORRECT       # "exactly the bound"
    assert ex.trim_prediction(r, 1000).evaluate(1100).outcome == INCORRECT       # one node too many
    assert ex.trim_prediction(r, 1000).evaluate(None).outcome == NOT_ATTEMPTED


# -- exercise 1: retire a consumer ----------------------------------------------------------------


def test_retire_reference_passes(r):
    assert ex.retire_consumer(r).evaluate(ex.retire).outcome == CORRECT


def test_retire_starter_is_not_attempted(r):
    def starter(r, stream, group, name, heir):
        raise NotImplementedError

    assert ex.retire_consumer(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_retire_with_delconsumer_only_fails(r):
    def delete_only(r, stream, group, name, heir):
        return r.xgroup_delconsumer(stream, group, name)

    res = ex.retire_consumer(r).evaluate(delete_only)
    assert res.outcome == INCORRECT and "discards" in res.message


def test_retire_one_page_only_fails(r):
    def one_page(r, stream, group, name, heir):
        ids = [p["message_id"] for p in r.xpending_range(stream, group, "-", "+", 100, consumername=name)]
        r.xclaim(stream, group, heir, 0, ids, justid=True)
        r.xgroup_delconsumer(stream, group, name)
        return len(ids)

    res = ex.retire_consumer(r).evaluate(one_page)
    assert res.outcome == INCORRECT and "still pending" in res.message


def test_retire_with_xautoclaim_takes_other_consumers_entries(r):
    def autoclaim_all(r, stream, group, name, heir):
        cursor, moved = "0-0", 0
        while True:
            cursor, claimed, _ = r.xautoclaim(stream, group, heir, 0, cursor)
            moved += len(claimed)
            if cursor == "0-0":
                break
        r.xgroup_delconsumer(stream, group, name)
        return moved

    res = ex.retire_consumer(r).evaluate(autoclaim_all)
    assert res.outcome == INCORRECT and "other consumer" in res.message


def test_retire_claiming_without_justid_bumps_counts(r):
    def redeliver(r, stream, group, name, heir):
        moved = 0
        while page := r.xpending_range(stream, group, "-", "+", 100, consumername=name):
            r.xclaim(stream, group, heir, 0, [p["message_id"] for p in page])
            moved += len(page)
        r.xgroup_delconsumer(stream, group, name)
        return moved

    res = ex.retire_consumer(r).evaluate(redeliver)
    assert res.outcome == INCORRECT and "delivery counts unchanged" in res.message


def test_retire_forgetting_delconsumer_fails(r):
    def keep_consumer(r, stream, group, name, heir):
        moved = 0
        while page := r.xpending_range(stream, group, "-", "+", 100, consumername=name):
            r.xclaim(stream, group, heir, 0, [p["message_id"] for p in page], justid=True)
            moved += len(page)
        return moved

    res = ex.retire_consumer(r).evaluate(keep_consumer)
    assert res.outcome == INCORRECT and "removed from the group" in res.message


# -- exercise 2: dead-letter sweep ----------------------------------------------------------------


def test_sweep_reference_passes(r):
    assert ex.dead_letter_sweep(r).evaluate(ex.sweep).outcome == CORRECT


def test_sweep_starter_is_not_attempted(r):
    def starter(r, stream, group, dlq, max_deliveries):
        raise NotImplementedError

    assert ex.dead_letter_sweep(r).evaluate(starter).outcome == NOT_ATTEMPTED


def _variant(*, page_only=False, strict=False, ack=True, copy=True):
    def sweep(r, stream, group, dlq, max_deliveries):
        moved = 0
        pel = r.xpending_range(stream, group, "-", "+", 100 if page_only else 10_000)
        for p in pel:
            over = p["times_delivered"] > max_deliveries if strict else p["times_delivered"] >= max_deliveries
            if over:
                i = p["message_id"]
                if copy:
                    r.xadd(dlq, {"id": i, **r.xrange(stream, i, i)[0][1]})
                if ack:
                    r.xack(stream, group, i)
                moved += 1
        return moved
    return sweep


def test_sweep_variants(r):
    assert ex.dead_letter_sweep(r).evaluate(_variant()).outcome == CORRECT   # one big page is fine here
    for wrong, words in ((_variant(page_only=True), "second page"), (_variant(strict=True), "exactly 3"),
                         (_variant(ack=False), "acknowledged"), (_variant(copy=False), "one copy")):
        res = ex.dead_letter_sweep(r).evaluate(wrong)
        assert res.outcome == INCORRECT and words in res.message, res.message


def test_sweep_by_claiming_fails(r):
    def autoclaim_sweep(r, stream, group, dlq, max_deliveries):
        moved, cursor = 0, "0-0"
        while True:
            cursor, claimed, _ = r.xautoclaim(stream, group, "sweeper", 0, cursor)
            for i, fields in claimed:
                [p] = r.xpending_range(stream, group, i, i, 1)
                if p["times_delivered"] > max_deliveries:     # the claim itself added one
                    r.xadd(dlq, {"id": i, **fields})
                    r.xack(stream, group, i)
                    moved += 1
            if cursor == "0-0":
                return moved

    res = ex.dead_letter_sweep(r).evaluate(autoclaim_sweep)
    assert res.outcome == INCORRECT and "same owner" in res.message
