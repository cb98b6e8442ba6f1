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
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from .exceptions import CheckFailed

CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"
_MARK = {CORRECT: "✓", INCORRECT: "✗", NOT_ATTEMPTED: "○"}


@dataclass(frozen=True)
class Result:
    """The outcome of one check, rendered as text and HTML from the same fields."""

    exercise: str
    outcome: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == CORRECT

    def __repr__(self) -> str:
        head = f"{_MARK[self.outcome]} {self.exercise}: {self.outcome}"
        return f"{head}\n{self.message}" if self.message else head

    def _repr_html_(self) -> str:
        colour = {CORRECT: "#1a7f37", INCORRECT: "#cf222e", NOT_ATTEMPTED: "#6e7781"}[self.outcome]
        body = f"<pre style='margin:0'>{html.escape(self.message)}</pre>" if self.message else ""
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
    """

    def __init__(self, name: str, checker: Callable[[Any], None], *, hints: list[str],
                 solution: str, reference: Any = None) -> None:
        self.name = name
        self.checker = checker
        self.hints = hints
        self.solution_code = solution
        self.reference = reference

    def evaluate(self, answer: Any) -> Result:
        """Run the checker and return the outcome without displaying or raising."""
        if answer is None or answer is Ellipsis:
            return Result(self.name, NOT_ATTEMPTED, "Replace the starter code, then run this cell again.")
        try:
            self.checker(_guarded(answer))
        except _NotAttempted:
            return Result(self.name, NOT_ATTEMPTED,
                          "The starter code still raises NotImplementedError: write your answer, then run this cell again.")
        except CheckFailed as exc:
            return Result(self.name, INCORRECT, str(exc))
        except Exception as exc:  # a bug in the checker itself is still shown, not hidden
            return Result(self.name, INCORRECT, f"the check itself failed: {type(exc).__name__}: {exc}")
        return Result(self.name, CORRECT)

    def check(self, answer: Any) -> None:
        """Show ✓ / ✗ / ○; raise CheckFailed when the answer is wrong (``evaluate`` only returns)."""
        result = self.evaluate(answer)
        _display(result)
        if result.outcome == INCORRECT:
            raise _Failed(result)

    def hint(self, n: int = 1) -> str:
        """Hint ``n`` (1 = gentlest)."""
        n = max(1, min(n, len(self.hints)))
        text = f"Hint {n}/{len(self.hints)}: {self.hints[n - 1]}"
        print(text)
        return text

    def solution(self) -> str:
        print(self.solution_code)
        return self.solution_code

    def __repr__(self) -> str:
        return f"Exercise({self.name!r}, {len(self.hints)} hints)"


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
        from IPython.display import display
        from IPython import get_ipython

        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:
        pass
    print(repr(obj))
