"""The leaderboard pattern on a real Redis: order, ranks, windows, best scores, composite scores."""

from __future__ import annotations

import pytest
import redis

from redistutor.patterns.leaderboards import MAX_TS, Leaderboard, composite_score, decode_score
from redistutor.scenarios import leaderboards as sc


def _board(r, n=300, seed=1):
    scores = sc.random_scores(n, seed=seed, high=50)   # many ties
    sc.load(r, "lb", scores)
    return Leaderboard(r, "lb"), scores, sc.python_order(scores)


def test_top_and_pages_equal_pythons_order(r):
    lb, scores, order = _board(r)
    assert lb.top(10) == order[:10] and lb.top() == order[:10]   # 10 by default
    pages = [row for p in range(0, 300, 25) for row in lb.top(25, offset=p)]
    assert pages == order


def test_rank_is_one_based_position_and_none_when_absent(r):
    lb, scores, order = _board(r)
    for i, (m, _) in enumerate(order):
        assert lb.rank(m) == i + 1
    assert lb.rank("nobody") is None


def test_around_is_centred_and_clipped(r):
    lb, scores, order = _board(r)
    me = order[100][0]
    assert lb.around(me, 5) == order[95:106] and lb.around(me, 5)[5][0] == me
    assert lb.around(order[0][0], 5) == order[:6]
    assert lb.around(order[-1][0], 2) == order[-3:]
    assert lb.around("nobody") == [] and lb.around(me) == order[95:106]   # k = 5 by default


def test_add_is_zincrby_and_loses_nothing_under_threads(redis_server, r):
    assert sc.zincrby_race(redis_server, "race", clients=8, each=50) == 400
    lb = Leaderboard(r, "lb")
    assert lb.add("alice", 5) == 5 and lb.add("alice", 2.5) == 7.5


def test_naive_read_modify_write_loses_increments(redis_server):
    assert sc.naive_race(redis_server, "naive", clients=10) == 1


def test_submit_best_keeps_the_highest(r):
    lb = Leaderboard(r, "lb")
    lb.submit_best("alice", 10)
    lb.submit_best("alice", 7)
    assert r.zscore("lb", "alice") == 10
    lb.submit_best("alice", 12)
    assert r.zscore("lb", "alice") == 12


def test_composite_breaks_ties_by_time_and_decodes(r):
    r.zadd("lb", {"late": composite_score(500, 1_700_000_001), "early": composite_score(500, 1_700_000_000),
                  "better": composite_score(501, 1_799_999_999)})
    assert r.zrange("lb", 0, -1, desc=True) == ["better", "early", "late"]
    assert decode_score(r.zscore("lb", "late")) == (500, 1_700_000_001)


def test_composite_refuses_values_beyond_2_53():
    top = (2**53 - MAX_TS) // MAX_TS
    assert composite_score(top, 0) < 2**53
    with pytest.raises(OverflowError):
        composite_score(1_000_000, 1_700_000_000)
    assert composite_score(900_719, 745_259_008) == 2**53 - 1
    with pytest.raises(OverflowError):          # exactly 2**53 is already out: 2**53 + 1 rounds to it
        composite_score(900_719, 745_259_007)
    with pytest.raises(OverflowError):
        composite_score(1, MAX_TS)


def test_page_composite_loses_the_tie_break_beyond_2_53(r):
    assert not sc.tie_pair(r, "tie", 1000)["equal"]
    pair = sc.tie_pair(r, "tie", 1_000_000)
    assert pair["equal"] and pair["order"] == ["player:late", "player:early"]
    trial = sc.tie_break_trial(r, "tb", [1000, 100_000, 10_000_000], pairs=50)
    assert trial[1000] == trial[100_000] == 100 and trial[10_000_000] < 50


def test_zrank_rev_is_a_syntax_error(r):
    r.zadd("lb", {"alice": 1})
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("ZRANK", "lb", "alice", "REV")


def test_latency_trial_checks_ranks_against_python(r):
    trial = sc.latency_trial(r, "lat", [50, 500], calls=5)
    assert [t["correct"] for t in trial.values()] == [True, True]
    assert trial[50]["encoding"] == "listpack" and trial[500]["encoding"] == "skiplist"


def test_daily_boards_match_python(r):
    days, bests, totals, best = sc.daily_boards(r, "w", days=3, games=50)
    for key, bkey, tot, b in zip(days, bests, totals, best):
        assert dict(r.zrange(key, 0, -1, withscores=True)) == tot
        assert dict(r.zrange(bkey, 0, -1, withscores=True)) == b
        assert r.ttl(key) > 0
