"""A plain table view for results that are not keys: trial outcomes, per-node state, measurements.

``Table(columns, rows, title=...)`` renders like every other view: aligned text, an HTML table
(text columns left-aligned, numeric columns right-aligned), and ``to_frame()``. Numeric columns are
found from the data, so a notebook never has to say which columns hold numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number
from typing import Any

from . import _html as H

__all__ = ["Table"]


def _is_num(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


class Table(H.Renderable):
    """Rows under named columns, with a title and an optional note under the table.

    Args:
        columns: column headers.
        rows: one sequence per row, as long as ``columns``.
        title: shown above the table.
        note: one line shown below it (a legend, or what the table proves).
        fmt: optional ``{column: format spec}``, e.g. ``{"ms": ".1f"}``.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "",
                 note: str = "", fmt: dict[str, str] | None = None) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        bad = [r for r in self.rows if len(r) != len(self.columns)]
        if bad:
            raise ValueError(f"Table rows must have {len(self.columns)} values (one per column); got {bad[0]!r}")
        self.title, self.note, self.fmt = title, note, dict(fmt or {})
        self.numeric = tuple(i for i in range(len(self.columns))
                             if self.rows and all(_is_num(r[i]) or r[i] is None for r in self.rows)
                             and any(_is_num(r[i]) for r in self.rows))

    def _cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = []
            for col, value in zip(self.columns, row):
                spec = self.fmt.get(col)
                if value is None:
                    cells.append("")
                elif spec and _is_num(value):
                    cells.append(format(value, spec))
                else:
                    cells.append(str(value))
            out.append(cells)
        return out

    def _text(self) -> str:
        parts = [self.title] if self.title else []
        parts.append(H.text_table(self.columns, self._cells(), right=self.numeric))
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)

    def _html(self) -> str:
        return ((H.title(self.title) if self.title else "")
                + H.html_table(self.columns, self._cells(), right=self.numeric)
                + (H.note(self.note) if self.note else ""))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)
