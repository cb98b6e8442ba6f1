"""Display options: a global text-only switch (xarray-style ``set_options``).

Every view renders plain text (``__repr__``) and HTML (``_repr_html_``) from the same rows. In
text mode ``_repr_html_`` returns ``<pre>{escape(repr(self))}</pre>``, so CI (nbval compares both
``text/plain`` and ``text/html``), terminals and reviewers diffing notebooks see stable text.

Use it as a call or as a ``with`` block::

    redistutor.set_options(display="text")       # from now on
    with redistutor.set_options(display="text"):  # only inside the block
        ...

``REDISTUTOR_DISPLAY=text`` in the environment sets the default (the test plugin sets it for
notebook kernels).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .exceptions import ConfigError

_DISPLAYS = ("html", "text")
# None for "display" means: read REDISTUTOR_DISPLAY at render time (so a kernel's env wins).
_options: dict[str, Any] = {
    "display": None,
    "max_rows": 50,  # rows shown per table before "... N more"
    "preview_width": 40,  # characters of a value preview
}
_lock = threading.Lock()


def _validate(name: str, value: Any) -> None:
    if name not in _options:
        raise ConfigError(f"Unknown option {name!r}: use one of {', '.join(sorted(_options))}.")
    if name == "display" and value not in (*_DISPLAYS, None):
        raise ConfigError(f"display={value!r} is not 'html' or 'text': pass one of those.")
    if name in ("max_rows", "preview_width") and not (isinstance(value, int) and value > 0):
        raise ConfigError(f"{name}={value!r} must be a positive integer.")


class set_options:
    """Set display options now; used as a context manager, restore them on exit.

    Args:
        display: "html" (JupyterLab shows tables and charts) or "text" (plain text everywhere).
        max_rows: rows shown per table before the rest is summarised.
        preview_width: characters of a value preview in key tables.
    """

    def __init__(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            _validate(name, value)
        with _lock:
            self._old = {k: _options[k] for k in kwargs}
            _options.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _options.update(self._old)

    def __repr__(self) -> str:
        return f"set_options({', '.join(f'{k}={v!r}' for k, v in sorted(get_options().items()))})"


def get_options() -> dict[str, Any]:
    """The current options, with ``display`` resolved from the environment if unset."""
    with _lock:
        out = dict(_options)
    out["display"] = display_mode()
    return out


def display_mode() -> str:
    """"text" or "html": the option if set, else ``$REDISTUTOR_DISPLAY``, else "html"."""
    mode = _options["display"]
    if mode is None:
        mode = os.environ.get("REDISTUTOR_DISPLAY", "").strip().lower() or "html"
        if mode not in _DISPLAYS:
            mode = "html"
    return mode


def text_mode() -> bool:
    return display_mode() == "text"


def option(name: str) -> Any:
    return _options[name]
