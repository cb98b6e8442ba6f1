"""Self-tests of the leaderboard exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import leaderboards as ex


def test_try_it_prediction(r):
    assert ex.composite_prediction(r, 900_000).evaluate(True).outcome == CORRECT
    assert ex.composite_prediction(r, 1_000_000).evaluate(False).outcome == CORRECT
    assert ex.composite_prediction(r, 1_000_000).evaluate(True).outcome == INCORRECT
    assert ex.composite_prediction(r, 900_000).evaluate(False).outcome == INCORRECT
    assert ex.composite_prediction(r, 900_000).evaluate(None).outcome == NOT_ATTEMPTED


def test_fastest_around_reference_passes(r):
    assert ex.fastest_around(r).evaluate(ex.around_fastest).outcome == CORRECT


def test_fastest_around_starter_is_not_attempted(r):
    def starter(r, key, player, k):
        raise NotImplementedError

    assert ex.fastest_around(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_fastest_around_highest_first_fails(r):
    def rev(r, key, player, k):   # the leaderboard code copied as is: highest time first
        i = r.zrevrank(key, player)
        return [] if i is None else r.zrange(key, max(0, i - k), i + k, desc=True, withscores=True)

    res = ex.fastest_around(r).evaluate(rev)
    assert res.outcome == INCORRECT and "fastest first" in res.message


def test_fastest_around_negative_start_fails(r):
    def unclipped(r, key, player, k):   # i - k < 0 wraps around to the end of the board
        i = r.zrank(key, player)
        return [] if i is None else r.zrange(key, i - k, i + k, withscores=True)

    res = ex.fastest_around(r).evaluate(unclipped)
    assert res.outcome == INCORRECT and "cut short" in res.message


def test_fastest_around_whole_board_fails(r):
    def whole(r, key, player, k):
        board = r.zrange(key, 0, -1, withscores=True)
        names = [m for m, _ in board]
        if player not in names:
            return []
        i = names.index(player)
        return board[max(0, i - k): i + k + 1]

    res = ex.fastest_around(r).evaluate(whole)
    assert res.outcome == INCORRECT and "whole board" in res.message


def test_fastest_around_missing_player_must_be_empty(r):
    def crashes(r, key, player, k):
        i = r.zrank(key, player)
        return r.zrange(key, max(0, (i or 0) - k), (i or 0) + k, withscores=True)

    assert ex.fastest_around(r).evaluate(crashes).outcome == INCORRECT


def test_weekly_best_reference_passes(r):
    assert ex.weekly_best(r).evaluate(ex.best_of_week).outcome == CORRECT


def test_weekly_best_sum_fails(r):
    def summed(r, day_keys, dest, ttl_s):
        r.zunionstore(dest, day_keys)
        r.expire(dest, ttl_s)
        return r.zrange(dest, 0, 2, desc=True, withscores=True)

    res = ex.weekly_best(r).evaluate(summed)
    assert res.outcome == INCORRECT and "not their sum" in res.message


def test_weekly_best_without_ttl_fails(r):
    def forever(r, day_keys, dest, ttl_s):
        r.zunionstore(dest, day_keys, aggregate="MAX")
        return r.zrange(dest, 0, 2, desc=True, withscores=True)

    res = ex.weekly_best(r).evaluate(forever)
    assert res.outcome == INCORRECT and "expires" in res.message


def test_weekly_best_lowest_first_fails(r):
    def lowest(r, day_keys, dest, ttl_s):
        r.zunionstore(dest, day_keys, aggregate="MAX")
        r.expire(dest, ttl_s)
        return r.zrange(dest, 0, 2, withscores=True)

    res = ex.weekly_best(r).evaluate(lowest)
    assert res.outcome == INCORRECT and "highest first" in res.message


def test_fastest_around_whole_board_reversed_fails(r):
    def whole_rev(r, key, player, k):
        board = list(reversed(r.zrange(key, 0, -1, desc=True, withscores=True)))   # ZREVRANGE 0 -1
        names = [m for m, _ in board]
        if player not in names:
            return []
        i = names.index(player)
        return board[max(0, i - k): i + k + 1]

    res = ex.fastest_around(r).evaluate(whole_rev)
    assert res.outcome == INCORRECT and "whole board" in res.message
