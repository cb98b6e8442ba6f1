"""Show source code in a notebook the way an editor would: syntax-highlighted, never ``print``ed.

``show_code(Lock.LUA_RELEASE)`` (a Lua script constant), ``show_code(FencedResource.write)`` (a
function or class: its source). Text mode and plain terminals get the code as it is.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

from . import _html as H

__all__ = ["Listing", "show_code"]


class Listing(H.Renderable):
    """Source code with a language; HTML is highlighted by Pygments (JupyterLab ships it)."""

    def __init__(self, code: str, language: str = "python", title: str = "") -> None:
        self.code, self.language, self.title = code.strip("\n"), language, title

    def _text(self) -> str:
        return (f"{self.title}\n" if self.title else "") + self.code

    def __str__(self) -> str:
        return self.code

    def _html(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import get_lexer_by_name

            body = highlight(self.code, get_lexer_by_name(self.language), HtmlFormatter(nowrap=True))
            styles = HtmlFormatter(style="default").get_style_defs(".rt-code")
            code = f'<style>{styles}</style><pre class="rt-code">{body}</pre>'
        except Exception:  # no Pygments: plain but still escaped
            code = f'<pre class="rt-code">{H.esc(self.code)}</pre>'
        return (H.title(self.title) if self.title else "") + code


def show_code(obj: Any, *, language: str | None = None, title: str = "") -> Listing:
    """A highlighted listing of ``obj``: a string of code (Lua scripts are detected), or the
    source of a function, method or class."""
    if isinstance(obj, str):
        code = textwrap.dedent(obj)
        lang = language or ("lua" if "redis.call" in code or "KEYS[" in code else "python")
    else:
        code = textwrap.dedent(inspect.getsource(obj))
        lang = language or "python"
    return Listing(code, lang, title)
