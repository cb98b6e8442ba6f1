"""Home timelines as capped Redis lists: fan-out on write, with the hybrid rule for celebrities.

Why the hybrid rule: a tweet by an author with F followers costs F ``LPUSH`` + ``LTRIM`` when it is
fanned out on write. For F in the millions that is a burst of work on the servers (and, done as one
atomic step, a stall for every other client). Below a follower threshold the tweet is pushed into
every follower's home list; above it, only into the author's own list, which each follower's read
merges in. Tweet ids grow with time (as Snowflake ids do), so merging is a sort by id.

Notebook: notebooks/29-twitter-internals.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/lists/
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

__all__ = ["Timelines"]


class Timelines:
    """Fan out on write below `celebrity` followers; merge celebrities' own posts at read time."""

    def __init__(self, r: redis.Redis, prefix: str = "tl", length: int = 800, celebrity: int = 10_000) -> None:
        self.r, self.prefix, self.length, self.celebrity = r, prefix, length, celebrity

    def home(self, user: str) -> str:
        return f"{self.prefix}:home:{user}"

    def posts(self, author: str) -> str:
        return f"{self.prefix}:posts:{author}"

    def post(self, author: str, tweet_id: int, followers: Sequence[str], batch: int = 1000) -> int:
        targets = [] if len(followers) >= self.celebrity else [self.home(f) for f in followers]  # hybrid
        with self.r.pipeline(transaction=False) as p:
            for i, key in enumerate([self.posts(author), *targets], 1):
                p.lpush(key, tweet_id)
                p.ltrim(key, 0, self.length - 1)           # capped: memory stays bounded
                if i % batch == 0:
                    p.execute()                            # other clients run between batches
            p.execute()
        return len(targets)

    def read(self, user: str, celebrities: Sequence[str] = (), n: int = 50) -> list[int]:
        """The newest n tweet ids: the home list merged with the followed celebrities' posts."""
        with self.r.pipeline(transaction=False) as p:
            for key in [self.home(user), *map(self.posts, celebrities)]:
                p.lrange(key, 0, n - 1)
            lists = p.execute()
        return sorted({int(t) for ids in lists for t in ids}, reverse=True)[:n]
