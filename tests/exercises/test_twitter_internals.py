"""Self-tests of the exercise checkers of notebook 29: the references pass, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import twitter_internals as ex


def test_delete_reference_passes(r):
    assert ex.delete_exercise(r).evaluate(ex.delete_tweet).outcome == CORRECT


def test_delete_starter_is_not_attempted(r):
    def starter(tl, author, tweet_id, followers):
        raise NotImplementedError

    assert ex.delete_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_delete_forgetting_the_authors_list_fails(r):
    """A celebrity's tweet lives only in the author's list: readers merge it back in."""
    def homes_only(tl, author, tweet_id, followers):
        with tl.r.pipeline(transaction=False) as p:
            for f in followers:
                p.lrem(tl.home(f), 0, tweet_id)
            p.execute()

    res = ex.delete_exercise(r).evaluate(homes_only)
    assert res.outcome == INCORRECT and "still sees" in res.message


def test_delete_one_round_trip_per_follower_fails(r):
    def unpipelined(tl, author, tweet_id, followers):
        for key in [tl.posts(author), *map(tl.home, followers)]:
            tl.r.lrem(key, 0, tweet_id)

    res = ex.delete_exercise(r).evaluate(unpipelined)
    assert res.outcome == INCORRECT and "round trips" in res.message


def test_delete_clearing_whole_lists_fails(r):
    def wipe(tl, author, tweet_id, followers):
        with tl.r.pipeline(transaction=False) as p:
            for key in [tl.posts(author), *map(tl.home, followers)]:
                p.delete(key)
            p.execute()

    res = ex.delete_exercise(r).evaluate(wipe)
    assert res.outcome == INCORRECT


def test_follow_reference_passes(r):
    assert ex.follow_exercise(r).evaluate(ex.follow).outcome == CORRECT


def test_follow_pushing_the_authors_tweets_on_top_fails(r):
    """LPUSH of older tweets puts them above newer ones: the order is no longer newest first."""
    def push_on_top(tl, user, author):
        ids = tl.r.lrange(tl.posts(author), 0, -1)
        tl.r.lpush(tl.home(user), *reversed(ids))
        tl.r.ltrim(tl.home(user), 0, tl.length - 1)

    assert ex.follow_exercise(r).evaluate(push_on_top).outcome == INCORRECT


def test_follow_without_dedup_fails(r):
    def merge_keep_duplicates(tl, user, author):
        ids = [int(x) for x in tl.r.lrange(tl.home(user), 0, -1) + tl.r.lrange(tl.posts(author), 0, -1)]
        with tl.r.pipeline(transaction=True) as p:
            p.delete(tl.home(user))
            p.rpush(tl.home(user), *sorted(ids, reverse=True)[: tl.length])
            p.execute()

    res = ex.follow_exercise(r).evaluate(merge_keep_duplicates)
    assert res.outcome == INCORRECT and "twice" in res.message


def test_follow_without_cap_fails(r):
    def uncapped(tl, user, author):
        ids = {int(x) for x in tl.r.lrange(tl.home(user), 0, -1) + tl.r.lrange(tl.posts(author), 0, -1)}
        with tl.r.pipeline(transaction=True) as p:
            p.delete(tl.home(user))
            p.rpush(tl.home(user), *sorted(ids, reverse=True))
            p.execute()

    assert ex.follow_exercise(r).evaluate(uncapped).outcome == INCORRECT


def test_nodes_prediction_right_and_wrong(r):
    assert ex.nodes_prediction(r, 100).evaluate(100).outcome == CORRECT
    assert ex.nodes_prediction(r, 100).evaluate(99).outcome == INCORRECT
    # a large positive count is capped at 8 KB per node: 10,000 / 10,000 = 1 node is wrong
    assert ex.nodes_prediction(r, 10_000).evaluate(1).outcome == INCORRECT
    assert ex.nodes_prediction(r, 10).evaluate(None).outcome == NOT_ATTEMPTED
