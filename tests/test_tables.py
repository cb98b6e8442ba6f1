"""Table: the view for results that are not keys (text exactly, HTML by content)."""

from __future__ import annotations

import pytest

from redistutor import Table, set_options
from redistutor._html import css


def _page(view):
    with set_options(display="html"):
        return view._repr_html_()


def test_text_right_aligns_numeric_columns_and_formats():
    rows = [["node-a", "master", 1234, None], ["node-b", "replica", 12, 3.456]]
    t = Table(["node", "role", "offset", "lag ms"], rows,
              title="replication", note="lag measured by the replica", fmt={"lag ms": ".1f"})
    assert t.numeric == (2, 3)
    assert repr(t) == """replication
node    role     offset  lag ms
------  -------  ------  ------
node-a  master     1234
node-b  replica      12     3.5
lag measured by the replica"""


def test_html_has_alignment_classes_and_the_css_override():
    t = Table(["trial", "outcome", "ms"], [[1, "two holders", 2.5], [2, "one holder", 1.25]], fmt={"ms": ".2f"})
    page = _page(t)
    assert '<th class="rt-num">trial</th><th class="rt-text">outcome</th><th class="rt-num">ms</th>' in page
    assert '<td class="rt-num">1</td><td class="rt-text">two holders</td><td class="rt-num">2.50</td>' in page
    # JupyterLab's :not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td { text-align: right } loses to these
    for selector in (".rt table.rt-table td,", ".jp-RenderedHTMLCommon .rt table.rt-table td {",
                     ".jp-RenderedHTMLCommon .rt table.rt-table td.rt-num,"):
        assert selector in css(), selector
    assert "text-align: left" in css() and "text-align: right" in css()


def test_mixed_column_is_text_and_bools_are_not_numbers():
    t = Table(["k", "v", "ok"], [["a", 1, True], ["b", "x", False]])
    assert t.numeric == ()


def test_text_mode_and_frame():
    t = Table(["a", "b"], [[1, "x"]])
    with set_options(display="text"):
        assert t._repr_html_() == "<pre>a  b\n-  -\n1  x</pre>"
    pytest.importorskip("pandas")
    assert t.to_frame().to_dict("list") == {"a": [1], "b": ["x"]}


def test_rows_must_match_columns():
    with pytest.raises(ValueError, match="one per column"):
        Table(["a", "b"], [[1]])
