"""Self-tests of the pattern guide's exercises: the references pass, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT
from redistutor.exercises import guide as ex


def test_pick_reference_passes_and_wrong_picks_fail():
    e = ex.pick_exercise()
    assert e.evaluate(e.reference).outcome == CORRECT
    assert e.evaluate(lambda need: "01-cache-aside").outcome == INCORRECT
    # A plausible confusion: a list-based queue for "later" and pub/sub for "every service".
    swaps = {**ex.NEEDS, "charge a customer again in 5 minutes if the payment failed": "13-reliable-queue"}
    assert e.evaluate(swaps.get).outcome == INCORRECT
    swaps = {**ex.NEEDS, "every service must see every order event, and a new service replays history": "16-pubsub"}
    assert e.evaluate(swaps.get).outcome == INCORRECT


def test_needing_reference_passes_and_typed_lists_fail():
    e = ex.needing_exercise()
    assert e.evaluate(e.reference).outcome == CORRECT
    assert "00-guide" in ex.needing("bloom") and "05-client-side-caching" in ex.needing("client-tracking")
    frozen = {f: ex.needing(f) for f in ("json", "vector-sets", "bloom", "client-tracking")}
    assert e.evaluate(lambda f: sorted(frozen[f], reverse=True)).outcome == INCORRECT  # not sorted
    assert e.evaluate(lambda f: frozen[f][:-1]).outcome == INCORRECT                  # one missed


def test_hll_bound_reference_passes_and_wrong_bounds_fail(r):
    e = ex.hll_bound_exercise(r, sizes=(1_000, 20_000))
    assert e.evaluate(e.reference).outcome == CORRECT
    assert e.evaluate(1_000).outcome == INCORRECT          # the dense HyperLogLog is bigger
    assert e.evaluate(10**9).outcome == INCORRECT          # true, but says nothing: above the set
    assert e.evaluate("12 KB").outcome == INCORRECT
