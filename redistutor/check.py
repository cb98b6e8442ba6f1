"""Checked exercises and learner-facing checks.

An :class:`Exercise` wraps a checker function. ``ex.check(answer)`` has three outcomes:

* **correct**: shows ✓;
* **incorrect**: shows ✗ with the reason (expected vs actual) and raises :class:`CheckFailed`,
  so a Run All (and nbval) stops there, like a failed assert;
* **not attempted**: the starter code still raises ``NotImplementedError``: shows ○ and does
  not raise, so a learner running the notebook top to bottom is told, not blocked.

An exception raised by the learner's own code is caught and reported as a failed check with its
message, not as a crash. ``ex.hint(n)`` gives increasingly specific hints; ``ex.solution()``
shows the reference solution.

Checkers look at Redis itself (keys, TTLs, command counts), not only at return values.
"""

from __future__ import annotations

import html
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import _html as H
from .exceptions import CheckFailed
from .listing import Listing
from .options import text_mode

CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"
_MARK = {CORRECT: "✓", INCORRECT: "✗", NOT_ATTEMPTED: "○"}
OK, BAD = "#1a7f37", "#cf222e"
# Messages are shown whole and wrap between words (JupyterLab's output <pre> breaks mid-word, and a
# <pre> that does not wrap hides the end of a long message off the right edge).
_PRE = "margin:0;white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere"


@dataclass(frozen=True)
class Result:
    """The outcome of one check, rendered as text and HTML from the same fields."""

    exercise: str
    outcome: str
    message: str = ""
    progress: str = field(default="", compare=False)  # why a workshop report failed (redistutor.progress)

    @property
    def passed(self) -> bool:
        return self.outcome == CORRECT

    def __repr__(self) -> str:
        head = f"{_MARK[self.outcome]} {self.exercise}: {self.outcome}"
        return f"{head}\n{self.message}" if self.message else head

    def _repr_html_(self) -> str | None:
        if text_mode():  # plain text only: no HTML twin for nbval to compare or a reviewer to diff
            return None
        colour = {CORRECT: OK, INCORRECT: BAD, NOT_ATTEMPTED: "#6e7781"}[self.outcome]
        body = f"<pre style='{_PRE}'>{html.escape(self.message)}</pre>" if self.message else ""
        return (f"<div style='border-left:4px solid {colour};padding:4px 8px'>"
                f"<b style='color:{colour}'>{_MARK[self.outcome]} {html.escape(self.exercise)}: "
                f"{self.outcome}</b>{body}</div>")


def expect(condition: bool, what: str, *, expected: Any = None, actual: Any = None) -> None:
    """Raise CheckFailed("what\\n  expected: ...\\n  actual:   ...") unless ``condition``."""
    if condition:
        return
    msg = what
    if expected is not None or actual is not None:
        msg += f"\n  expected: {expected!r}\n  actual:   {actual!r}"
    raise CheckFailed(msg)


class _NotAttempted(Exception):
    pass


class Exercise:
    """One exercise: a checker, hints and a reference solution.

    Args:
        name: short title shown with the verdict.
        checker: ``checker(answer)``; raises :class:`CheckFailed` (use :func:`expect`) when wrong.
        hints: from gentle to nearly-the-answer.
        solution: the reference solution's source code, and ``reference`` the object itself
            (the self-tests check that it passes).
        notebook: the notebook's slug for workshop progress reports; by default the module that
            built the exercise names it (``redistutor.exercises.cache_aside`` -> ``cache-aside``).
    """

    def __init__(self, name: str, checker: Callable[[Any], None], *, hints: list[str],
                 solution: str, reference: Any = None, notebook: str | None = None) -> None:
        from .progress import origin

        # Where progress reports file it: notebook, exercise (the factory's name) and its place.
        self.notebook, self.exercise_id, self.position = origin(sys._getframe(1), notebook, name)
        self.name = name
        self.checker = checker
        self.hints = hints
        self.solution_code = solution
        self.reference = reference

    def evaluate(self, answer: Any) -> Result:
        """Run the checker and return the outcome without displaying or raising; when workshop
        progress is on (``$REDISTUTOR_PROGRESS_URL``), report it (a failed report is noted in
        ``result.progress``, never raised)."""
        from .progress import report

        result = self._evaluate(answer)
        note = report(self, result.outcome)
        return replace(result, progress=note) if note else result

    def _evaluate(self, answer: Any) -> Result:
        if answer is None or answer is Ellipsis:
            return Result(self.name, NOT_ATTEMPTED, "Replace the starter code, then run this cell again.")
        try:
            self.checker(_guarded(answer))
        except _NotAttempted:
            return Result(self.name, NOT_ATTEMPTED,
                          "The starter code still raises NotImplementedError: "
                          "write your answer, then run this cell again.")
        except CheckFailed as exc:
            return Result(self.name, INCORRECT, str(exc))
        except Exception as exc:  # a bug in the checker itself is still shown, not hidden
            return Result(self.name, INCORRECT, f"the check itself failed: {type(exc).__name__}: {exc}")
        return Result(self.name, CORRECT)

    def check(self, answer: Any) -> None:
        """Show ✓ / ✗ / ○; raise CheckFailed when the answer is wrong (``evaluate`` only returns)."""
        result = self.evaluate(answer)
        _display(result)
        if result.progress:
            print(result.progress)
        if result.outcome == INCORRECT:
            raise _Failed(result)

    def hint(self, n: int = 1) -> Hint:
        """Hint ``n`` (1 = gentlest), as a view: the last line of a cell shows it once."""
        n = max(1, min(n, len(self.hints)))
        return Hint(f"Hint {n}/{len(self.hints)}: {self.hints[n - 1]}")

    def solution(self) -> Listing | Hint:
        """The reference solution, highlighted (the last line of a cell shows it once);
        ``str(ex.solution())`` is its code. In a workshop whose facilitator holds solutions back,
        one sentence saying so instead."""
        from .progress import held_back

        held = held_back(self)
        if held:
            return Hint(held)
        return Listing(self.solution_code, title=f"{self.name}: a reference solution")

    def __repr__(self) -> str:
        return f"Exercise({self.name!r}, {len(self.hints)} hints)"


class Hint(H.Renderable):
    """One hint, shown once as text (its repr) or as a note in HTML; ``str()`` is the text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _text(self) -> str:
        return self.text

    def _html(self) -> str:
        return H.note(self.text)

    def __str__(self) -> str:
        return self.text


class _Failed(CheckFailed):
    """CheckFailed shown in Jupyter as the verdict only (the ✗ box above says the rest)."""

    def __init__(self, result: Result) -> None:
        super().__init__(repr(result))
        self.result = result

    def _render_traceback_(self) -> list[str]:
        return [f"CheckFailed: {self.result.exercise} is not correct yet (see the reason above)."]


def _guarded(answer: Any) -> Any:
    """Wrap a callable answer: NotImplementedError means "not attempted"; other errors are the
    learner's, reported with their message and the line that raised."""
    if not callable(answer):
        return answer

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return answer(*args, **kwargs)
        except NotImplementedError:
            raise _NotAttempted() from None
        except CheckFailed:
            raise
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
            raise CheckFailed(f"your code raised {type(exc).__name__}: {exc}{where}") from None

    call.__wrapped__ = answer  # type: ignore[attr-defined]
    return call


def _display(obj: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:
        pass
    print(repr(obj))


# ---------------------------------------------------------------------------------------------
# Learner-facing checks: each shows ✓ or ✗ (with expected vs actual) and raises CheckFailed on ✗.
# ``target`` is a server (the key is inside its namespace) or a redis.Redis client.


@dataclass(frozen=True)
class Verdict:
    """The outcome of one learner-facing check (text and HTML from the same fields)."""

    what: str
    passed: bool
    expected: Any = None
    actual: Any = None

    def __repr__(self) -> str:
        if self.passed:
            return f"✓ {self.what}"
        return f"✗ {self.what}\n  expected: {self.expected!r}\n  actual:   {self.actual!r}"

    def _repr_html_(self) -> str | None:
        if text_mode():  # plain text only: no HTML twin for nbval to compare or a reviewer to diff
            return None
        colour = OK if self.passed else BAD
        body = "" if self.passed else (
            f"<pre style='{_PRE}'>expected: {html.escape(repr(self.expected))}\n"
            f"actual:   {html.escape(repr(self.actual))}</pre>")
        return (f"<div style='border-left:4px solid {colour};padding:2px 8px'>"
                f"<b style='color:{colour}'>{'✓' if self.passed else '✗'}</b> {html.escape(self.what)}{body}</div>")


class _VerdictFailed(CheckFailed):
    """CheckFailed whose Jupyter traceback is one line (the ✗ box above shows the details)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(repr(verdict))
        self.verdict = verdict

    def _render_traceback_(self) -> list[str]:
        return [f"CheckFailed: {self.verdict.what} (see above)"]


def verdict(what: str, passed: bool, expected: Any = None, actual: Any = None, *,
            show: bool = True) -> Verdict | None:
    """Show a verdict and raise CheckFailed if it failed (the building block of every check).

    Returns the :class:`Verdict` only with ``show=False``: a shown verdict returned as well would
    be displayed twice when a check is the last line of a cell.
    """
    v = Verdict(what, bool(passed), expected, actual)
    if show:
        _display(v)
    if not v.passed:
        raise _VerdictFailed(v)
    return None if show else v


def _target(target: Any, key: str):
    from .keys import resolve

    r, ns = resolve(target)
    return r, ns + key


def _value(r: Any, full: str) -> Any:
    """A key's value as plain Python: str, dict, list, set, {member: score}; None if missing."""
    t = r.type(full)
    t = t.decode() if isinstance(t, bytes) else t
    if t == "none":
        return None
    if t == "string":
        return r.get(full)
    if t == "hash":
        return r.hgetall(full)
    if t == "list":
        return r.lrange(full, 0, -1)
    if t == "set":
        return set(r.smembers(full))
    if t == "zset":
        return dict(r.zrange(full, 0, -1, withscores=True))
    if t == "ReJSON-RL":
        return r.json().get(full, "$")[0]
    raise CheckFailed(f"key_equals cannot compare a {t} key; use a view (show) and assert on it")


def _normalise(expected: Any, actual: Any) -> Any:
    """Let learners write numbers where Redis stores strings: 3 == "3", {"n": 1} == {"n": "1"}."""
    def s(x: Any) -> Any:
        return str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x

    if isinstance(expected, dict) and isinstance(actual, dict):
        if all(isinstance(v, (int, float)) for v in actual.values()):  # a sorted set
            return {k: float(v) for k, v in expected.items()}
        return {k: s(v) for k, v in expected.items()}
    if isinstance(expected, (list, tuple)):
        return [s(x) for x in expected]
    if isinstance(expected, (set, frozenset)):
        return {s(x) for x in expected}
    return s(expected)


def key_equals(target: Any, key: str, expected: Any, *, show: bool = True) -> Verdict | None:
    """``key`` holds ``expected`` (a string/number, dict for a hash, list, set, {member: score})."""
    r, full = _target(target, key)
    actual = _value(r, full)
    want = _normalise(expected, actual)
    return verdict(f"`{key}` equals {expected!r}", actual == want, want,
                   "key does not exist" if actual is None else actual, show=show)


def key_exists(target: Any, key: str, expected: bool = True, *, show: bool = True) -> Verdict | None:
    r, full = _target(target, key)
    actual = bool(r.exists(full))
    what = f"`{key}` exists" if expected else f"`{key}` does not exist"
    return verdict(what, actual == expected, "exists" if expected else "missing",
                   "exists" if actual else "missing", show=show)


def ttl_between(target: Any, key: str, lo: float, hi: float, *, show: bool = True) -> Verdict | None:
    """``key`` exists and expires in ``lo``..``hi`` seconds (inclusive; measured with PTTL)."""
    r, full = _target(target, key)
    pttl = r.pttl(full)
    actual: Any = {-2: "key does not exist", -1: "no TTL (the key never expires)"}.get(pttl, pttl / 1000)
    ok = pttl >= 0 and lo <= pttl / 1000 <= hi
    return verdict(f"`{key}` expires in {lo:g}..{hi:g} s", ok, f"{lo:g}..{hi:g} s",
                   actual if isinstance(actual, str) else f"{actual:g} s", show=show)


def type_is(target: Any, key: str, expected: str, *, show: bool = True) -> Verdict | None:
    """``key`` has this type: string, hash, list, set, zset, stream, json, vectorset, bloom, ..."""
    from .keys import TYPE_NAMES

    r, full = _target(target, key)
    t = r.type(full)
    t = t.decode() if isinstance(t, bytes) else t
    actual = TYPE_NAMES.get(t, t)
    return verdict(f"`{key}` is a {expected}", actual == expected, expected,
                   "key does not exist" if actual == "none" else actual, show=show)


def at_most_concurrent(log: Any, limit: int = 1, *, start_kind: Any = "acquire", end_kind: Any = "release",
                       show: bool = True) -> Verdict | None:
    """Check that at most ``limit`` actors held the resource at once (spans from start_kind to
    end_kind). ``redistutor.max_concurrent(log)`` and ``Timeline.max_concurrent`` give the number."""
    from .timeline import max_concurrent as _max
    from .timeline import overlaps

    actual = _max(log, start_kind, end_kind)
    what = f"at most {limit} holder{'s' * (limit != 1)} at a time"
    if actual > limit:
        pairs = ", ".join(" & ".join(p) for p in overlaps(log, start_kind, end_kind)[:3])
        return verdict(what, False, f"≤ {limit}", f"{actual} at once ({pairs})", show=show)
    return verdict(what, True, f"≤ {limit}", actual, show=show)


# The name this check had before it was told apart from the counting max_concurrent.
max_concurrent = at_most_concurrent


def commands_were(t: Any, expected: list[str], *, thread: str | None = None, show: bool = True) -> Verdict | None:
    """The traced commands (names, in order) were exactly ``expected``, e.g. ["GET", "SET"]."""
    actual = t.names(thread=thread)
    want = [n.upper() for n in expected]
    return verdict(f"commands sent: {' then '.join(want) or 'none'}", actual == want, want, actual, show=show)


def round_trips(t: Any, expected: int, *, show: bool = True) -> Verdict | None:
    """The traced block used exactly ``expected`` round trips (a pipeline counts as one)."""
    return verdict(f"{expected} round trip{'s' * (expected != 1)}", t.round_trips == expected,
                   expected, t.round_trips, show=show)
