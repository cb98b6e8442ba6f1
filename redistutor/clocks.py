"""Clocks to inject into the patterns, to model another machine's clock.

One class for both kinds of wrong clock the notebooks use:

- an **offset**: the clock is ahead or behind by a fixed amount (notebook 09: an app server whose
  clock is 90 s behind puts its requests into another rate-limit window);
- a **rate**: the clock runs faster or slower than real time (notebook 08: a Redlock client whose
  clock runs at half speed believes its lock is valid for twice as long as the keys live).

The unit is the base clock's: ``time.monotonic`` (seconds, the default) for Redlock, a
millisecond clock for the rate limiters.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SkewedClock:
    """``base`` seen from a machine whose clock runs at ``rate`` times real speed (counted from
    the moment the clock is made) and is ``offset`` ahead (negative: behind).

    ``SkewedClock(0.5)``: a client whose clock runs slow, it measures half the time that passed.
    ``SkewedClock(offset=-90_000, base=clock_ms)``: an app server 90 s behind. With ``rate`` 1 an
    integer base and offset stay integers (milliseconds stay whole).
    """

    def __init__(self, rate: float = 1.0, offset: float = 0, base: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.offset = offset
        self.base = base
        self.t0 = base()

    def __call__(self) -> float:
        now = self.base()
        if self.rate != 1:
            now = self.t0 + (now - self.t0) * self.rate
        return now + self.offset

    def __repr__(self) -> str:
        return f"SkewedClock(rate={self.rate:g}, offset={self.offset:+g})"
