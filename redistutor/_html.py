"""Escape-everything helpers shared by the views: aligned text tables and their HTML twins.

Views build one list of rows and hand it to both :func:`text_table` and :func:`html_table`, so
the text and HTML forms cannot drift apart. Every value goes through :func:`html.escape`; raw
HTML is only ever produced here or by a view's own drawing code (SVG, boxes).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from .options import option, text_mode


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


@lru_cache(maxsize=1)
def css() -> str:
    try:
        return resources.files("redistutor").joinpath("static/style.css").read_text()
    except (FileNotFoundError, OSError):  # an odd install without package data: plain tables
        return ""


def _cut(rows: Sequence[Sequence[Any]]) -> tuple[list[Sequence[Any]], int]:
    limit = option("max_rows")
    rows = list(rows)
    return rows[:limit], max(0, len(rows) - limit)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
               right: Sequence[int] = ()) -> str:
    """An aligned plain-text table; columns listed in ``right`` are right-aligned (numbers)."""
    shown, more = _cut(rows)
    cells = [[str(c) for c in row] for row in shown]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(row) for row in cells]
    if more:
        out.append(f"... {more} more")
    return "\n".join(out)


NUM, TEXT = "rt-num", "rt-text"  # cell classes: numbers right-aligned, text left-aligned


def align(numeric: bool) -> str:
    """The alignment class of a cell: every ``td``/``th`` gets one, so the stylesheet (and not
    JupyterLab's ``td { text-align: right }``) decides; see static/style.css."""
    return NUM if numeric else TEXT


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
               right: Sequence[int] = (), raw: Sequence[int] = ()) -> str:
    """The HTML twin of :func:`text_table`; columns in ``raw`` hold HTML made by a view."""
    shown, more = _cut(rows)
    head = "".join(f'<th class="{align(i in right)}">{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for row in shown:
        tds = []
        for i, c in enumerate(row):
            tds.append(f'<td class="{align(i in right)}">{c if i in raw else esc(c)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    tail = f'<div class="rt-note">... {more} more</div>' if more else ""
    return f'<table class="rt-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{tail}'


def title(text: str) -> str:
    return f'<div class="rt-title">{esc(text)}</div>'


def note(text: str) -> str:
    return f'<div class="rt-note">{esc(text)}</div>'


def page(*parts: str) -> str:
    """Wrap view HTML with the stylesheet (inline: notebooks must render anywhere, offline)."""
    return f'<div class="rt"><style>{css()}</style>{"".join(parts)}</div>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


class Renderable:
    """Base of every view: ``__repr__`` from :meth:`_text`, ``_repr_html_`` from :meth:`_html`.

    In text mode (``set_options(display="text")`` or ``REDISTUTOR_DISPLAY=text``)
    ``_repr_html_`` returns the text in a ``<pre>``.
    """

    def _text(self) -> str:
        raise NotImplementedError

    def _html(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self._text()

    def _repr_html_(self) -> str:
        if text_mode():
            return pre(repr(self))
        return page(self._html())
