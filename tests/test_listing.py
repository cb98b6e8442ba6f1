"""show_code: highlighted source, never print()ed."""

from __future__ import annotations

from redistutor import set_options, show_code
from redistutor.listing import Listing

LUA = """
-- KEYS[1] lock, ARGV[1] token
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""


def release(r, key, token):
    """Release only our own lock."""
    return r.eval(LUA, 1, key, token)


def test_lua_string_is_detected_and_kept_verbatim():
    listing = show_code(LUA)
    assert isinstance(listing, Listing) and listing.language == "lua"
    assert repr(listing) == LUA.strip("\n")


def test_function_source_and_title():
    listing = show_code(release, title="release")
    assert listing.language == "python"
    assert repr(listing).splitlines()[:2] == ["release", "def release(r, key, token):"]


def test_html_is_highlighted_and_escaped():
    with set_options(display="html"):
        page = show_code(release)._repr_html_()
    assert '<pre class="rt-code">' in page and "<span" in page  # Pygments spans
    assert "def" in page and "release" in page
    with set_options(display="html"):
        page = show_code("if a < b then return 1 end", language="lua")._repr_html_()
    assert "&lt;" in page and "< b" not in page


def test_text_mode_is_the_plain_code():
    with set_options(display="text"):
        assert show_code("x = 1")._repr_html_() == "<pre>x = 1</pre>"
