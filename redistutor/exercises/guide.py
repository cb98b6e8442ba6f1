"""Exercises for notebooks/00-guide.ipynb: pick the notebook for a need, and read a notebook's needs.

1. ``pick(need) -> notebook stem`` for needs the decision tables do not list word for word.
2. ``needing(feature) -> sorted stems`` of the notebooks whose ``requires=`` names a feature,
   read from the notebooks themselves (the way the test runner decides what a server can run).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from ..check import Exercise, expect
from ..pytest_plugin import notebook_requirements

NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"

# Needs phrased the way a team would say them, and the notebook that teaches the answer.
NEEDS = {
    "count distinct visitors per day within about 1 %, in kilobytes": "20-probabilistic-data-structures",
    "charge a customer again in 5 minutes if the payment failed": "12-delayed-queue",
    "every service must see every order event, and a new service replays history": "15-streams-event-sourcing",
    "at most 100 API calls a minute per key, shared by all app servers": "09-rate-limiting",
    "one nightly job must run on exactly one of our 6 machines": "07-distributed-locking",
    "the top 10 players and each player's own rank, live": "23-leaderboards",
}


def pick(need: str) -> str:
    # The word in each need that names the pattern, and the notebook that teaches it.
    clues = [("distinct", "20-probabilistic-data-structures"), ("again in", "12-delayed-queue"),
             ("replays history", "15-streams-event-sourcing"), ("calls a minute", "09-rate-limiting"),
             ("exactly one", "07-distributed-locking"), ("rank", "23-leaderboards")]
    return next(stem for clue, stem in clues if clue in need)


def pick_exercise() -> Exercise:
    def checker(answer) -> None:
        for need, stem in NEEDS.items():
            got = answer(need)
            expect(got == stem, f"the notebook for: {need}", expected=stem, actual=got)

    return Exercise("pick the notebook for a need", checker, hints=[
        "Read each need for its key word: approximate counting, 'later', 'every consumer sees every event'.",
        "A stream keeps its events for replay; a delayed queue is a sorted set scored by due time; "
        "a leaderboard is a sorted set scored by points.",
    ], solution=inspect.getsource(pick), reference=pick)


def needing(feature: str) -> list[str]:
    stems = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        requires = notebook_requirements(path) or {}
        if feature in requires.get("features", []):
            stems.append(path.stem)
    return stems


def needing_exercise() -> Exercise:
    def checker(answer) -> None:
        for feature in ("json", "vector-sets", "bloom", "client-tracking"):
            got = answer(feature)
            want = needing(feature)
            expect(isinstance(got, list) and got == want,
                   f"the notebooks whose requires= names {feature!r}, sorted (read from the notebooks, "
                   "not typed: a new notebook must count)", expected=want, actual=got)

    return Exercise("which notebooks need a feature", checker, hints=[
        "notebook_requirements(path) returns the requires= dict of a notebook's start_server call, or None.",
        "Loop over sorted(Path('.').glob('[0-9][0-9]-*.ipynb')) and keep path.stem when the feature is listed.",
    ], solution=inspect.getsource(needing), reference=needing)


# -- Try it: a bound on a HyperLogLog's size --------------------------------------------------------

def hll_bound_exercise(r, sizes: tuple[int, ...] = (1_000, 20_000, 200_000), *,
                       key: Callable[..., str] | None = None) -> Exercise:
    """The learner's upper bound, in bytes, on a HyperLogLog's MEMORY USAGE for any number of ids
    (measured on keys named by ``key``, e.g. ``server.key``: under the notebook's namespace)."""
    from ..scenarios.guide import plain_key, set_vs_hll

    def checker(answer) -> None:
        expect(isinstance(answer, int) and answer > 0, "the bound is a positive whole number of bytes",
               expected="an int", actual=answer)
        for n in sizes:
            m = set_vs_hll(r, n, key=key or plain_key)
            expect(m["hll_bytes"] <= answer, f"the HyperLogLog of {n:,} ids fits in your bound",
                   expected=f"<= {answer:,}", actual=m["hll_bytes"])
            expect(answer < m["set_bytes"] or n < 20_000,
                   f"your bound is below what a set of {n:,} ids takes (else it says nothing)",
                   expected=f"< {m['set_bytes']:,}", actual=answer)

    return Exercise("a bound on a HyperLogLog's size", checker, hints=[
        "Look at the HyperLogLog's bytes in the counting table, then at what happens when N grows.",
        "Redis's dense HyperLogLog has 16,384 registers of 6 bits each, plus a small header.",
    ], solution="my_bound = 16 * 1024", reference=16 * 1024)
