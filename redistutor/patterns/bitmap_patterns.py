"""Bitmaps: one bit per user id in a Redis string, and small counters packed side by side.

A string is an array of bits: ``SETBIT key id 1`` marks user ``id``, ``BITCOUNT`` counts the
marks, ``BITOP AND/OR/XOR/NOT`` combines whole days on the server. One million ids cost 125,000
bytes, whatever the number of users marked, because the string is as long as the **highest**
offset: dense ids are cheap, sparse ids are not (one mark at id 100,000,000 allocates 12.5 MB)::

    ids 0..999,999, 10% active  -> bitmap 125,000 bytes  | a set of the 100,000 ids: ~4 MB
    ids 0..999,999, 0.1% active -> bitmap 125,000 bytes  | a set of the 1,000 ids:   ~40 KB

Why one bit at a time and not the whole value (the lost flag)::

    time 0  request A: GET flags:7 -> 0b10000000        (dark mode on)
    time 1  request B: GET flags:7 -> 0b10000000, sets bit 2 (beta), SET -> 0b10100000
    time 2  request A: sets bit 1 (notifications) in its copy, SET -> 0b11000000: beta is lost

``SETBIT`` changes one bit on the server, so A and B cannot undo each other; ``BITFIELD INCRBY``
does the same for a packed counter, with an explicit overflow rule (``SAT``, ``WRAP`` or ``FAIL``).

Notebook: notebooks/21-bitmap-patterns.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/bitmaps/ ·
https://redis.io/docs/latest/commands/bitop/ · https://redis.io/docs/latest/commands/bitfield/
"""

from __future__ import annotations

__all__ = ["DailyActive", "PackedCounters"]


class DailyActive:
    """One bitmap per day: bit ``user_id`` of ``prefix:day`` is 1 if that user was active."""

    def __init__(self, r, prefix="dau", max_id=2**24):
        self.r, self.prefix, self.max_id = r, prefix, max_id

    def key(self, day):
        return f"{self.prefix}:{day}"

    def mark(self, day, user_id):
        if not 0 <= user_id < self.max_id:  # one huge id would allocate a huge string
            raise ValueError(f"user id {user_id} is outside 0..{self.max_id - 1}")
        return self.r.setbit(self.key(day), user_id, 1)  # the bit's previous value

    def was_active(self, day, user_id):
        return self.r.getbit(self.key(day), user_id) == 1

    def count(self, *days, op="OR"):
        """Users active on any (OR), every (AND) or an odd number (XOR) of these days."""
        if len(days) == 1:
            return self.r.bitcount(self.key(days[0]))
        tmp = f"{self.prefix}:tmp:{op}:{'+'.join(map(str, days))}"
        with self.r.pipeline(transaction=True) as p:  # one round trip, no leftover key
            p.bitop(op, tmp, *[self.key(d) for d in days])
            p.bitcount(tmp)
            p.delete(tmp)
            return p.execute()[1]


class PackedCounters:
    """Counter ``i`` is the i-th ``bits``-wide unsigned field of one string (BITFIELD ``#i``)."""

    def __init__(self, r, key, bits=8, overflow="SAT"):
        self.r, self.key, self.type, self.overflow = r, key, f"u{bits}", overflow

    def incr(self, i, by=1):
        """Add ``by`` atomically: SAT stops at the limit, WRAP wraps around, FAIL refuses (None)."""
        op = self.r.bitfield(self.key, default_overflow=self.overflow)
        return op.incrby(self.type, f"#{i}", by).execute()[0]

    def get(self, i):
        return self.r.bitfield_ro(self.key, self.type, f"#{i}")[0]
