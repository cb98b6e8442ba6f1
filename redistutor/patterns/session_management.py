"""Sessions in Redis: a hash per session under an unguessable id, expiring by itself.

Every app server reads the same session, and Redis deletes it when it has been idle too long, with
no cleanup job. Three choices matter more than they look:

* **a hash, updated field by field**, not a serialized string rewritten whole. Two requests that
  change different fields at once both survive; a plain ``SET`` of the whole string also drops
  the key's TTL and makes the session immortal::

      time 0  request A: GET session:x -> {"cart": [], "theme": "light"}
      time 1  request B: GET, sets theme = "dark", SET session:x {... "theme": "dark"}
      time 2  request A: appends to its copy of the cart, SET session:x {... "theme": "light"}:
              B's theme is lost (and with a SET without EX or KEEPTTL, so is the expiry)

* **sliding expiry, capped**: each read restarts the idle TTL in the same round trip (a script),
  but never past a hard deadline set at login (``expires_at``), so a stolen session cannot be
  kept alive forever, and the per-user index can be given a TTL that outlives every session in it;
* **writes that never resurrect**: ``HSET`` on a session that expired a moment ago creates a new
  hash with one field and no TTL. :class:`Sessions` updates fields only while the session exists,
  and deletes every session of a user ("log out everywhere") under ``WATCH``, so a login racing
  with it is not left behind.

Session ids come from :func:`secrets.token_urlsafe` (256 random bits), and a login always creates
a new id (never "upgrades" the anonymous one: session fixation).

Notebook: notebooks/24-session-management.ipynb
Redis: https://redis.io/docs/latest/commands/hset/ · https://redis.io/docs/latest/commands/pexpire/ ·
https://redis.io/docs/latest/commands/hexpire/ · https://redis.io/docs/latest/develop/interact/transactions/
"""

from __future__ import annotations

import secrets
import time

__all__ = ["SessionStore", "Sessions"]


class SessionStore:
    """Sessions as hashes under a random id: a sliding idle TTL, capped by a hard lifetime."""

    # KEYS[1] = session; ARGV = idle TTL (ms), now (ms). Returns its fields ({} if gone); slides its TTL to expires_at.
    LUA_TOUCH = """
    local s = redis.call('HGETALL', KEYS[1])
    local left = (tonumber(redis.call('HGET', KEYS[1], 'expires_at')) or 0) - tonumber(ARGV[2])
    if left <= 0 then redis.call('DEL', KEYS[1]) return {} end
    redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), left))
    return s
    """

    def __init__(self, r, prefix="session", idle_ms=1_800_000, max_ms=43_200_000):
        self.r, self.prefix, self.idle_ms, self.max_ms = r, prefix, idle_ms, max_ms
        self.touch = r.register_script(self.LUA_TOUCH)

    def create(self, user_id, **data):                  # at login too: never keep the old id
        sid, now = secrets.token_urlsafe(32), int(time.time() * 1000)    # 256 random bits
        with self.r.pipeline(transaction=True) as tx:
            tx.hset(f"{self.prefix}:{sid}", mapping={**data, "user_id": user_id, "expires_at": now + self.max_ms})
            tx.pexpire(f"{self.prefix}:{sid}", min(self.idle_ms, self.max_ms))
            tx.sadd(f"{self.prefix}:user:{user_id}", sid)                 # the user's index...
            tx.pexpire(f"{self.prefix}:user:{user_id}", self.max_ms)      # ...outlives its sessions
            tx.execute()
        return sid

    def get(self, sid):                                 # read + slide, one round trip; None if gone
        s = self.touch(keys=[f"{self.prefix}:{sid}"], args=[self.idle_ms, int(time.time() * 1000)])
        return dict(zip(s[::2], s[1::2])) or None


class Sessions(SessionStore):
    """Field updates that never resurrect a session, and "log out everywhere"."""

    # KEYS[1] = the session; ARGV = field, value, ... Sets only these fields (the TTL stays); 0 if gone.
    LUA_UPDATE = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    redis.call('HSET', KEYS[1], unpack(ARGV))
    return 1
    """

    def __init__(self, r, **kwargs):
        super().__init__(r, **kwargs)
        self.set_fields = r.register_script(self.LUA_UPDATE)

    def update(self, sid, **fields):
        return self.set_fields(keys=[f"{self.prefix}:{sid}"], args=[x for kv in fields.items() for x in kv]) == 1

    def logout_everywhere(self, user_id):               # every session of the user, and the index
        index = f"{self.prefix}:user:{user_id}"

        def delete_all(tx):                             # under WATCH index: a login before EXEC
            sids = tx.smembers(index)                   # aborts it, and redis-py runs this again
            tx.multi()
            tx.delete(index, *[f"{self.prefix}:{s}" for s in sids])
            return len(sids)

        return self.r.transaction(delete_all, index, value_from_callable=True)
