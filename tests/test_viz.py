"""Exact text renders of every view (built from data), HTML/text consistency, the text switch."""

from __future__ import annotations

import re

import pytest

from redistutor import set_options
from redistutor.diff import Diff
from redistutor.events import EventLog
from redistutor.keys import KeyInfo, Snapshot
from redistutor.options import get_options
from redistutor.timeline import Timeline
from redistutor.viz import (
    BitmapView,
    GeoView,
    HashView,
    HyperLogLogView,
    JSONView,
    KeyTable,
    ListView,
    ModuleInfoView,
    SetView,
    StreamView,
    StringView,
    VectorSetView,
    ZSetView,
    show,
)

ROWS = [
    KeyInfo("user:2", "string", "embstr", None, 56, '"bob"'),
    KeyInfo("user:1", "hash", "listpack", 3_500_000, 80, '{name: "Ada", visits: 3}'),
]


def _log() -> EventLog:
    log = EventLog()
    for t, actor, kind in [(0.0, "w1", "acquire"), (0.1, "w2", "read"), (0.2, "w1", "release"),
                           (0.3, "w2", "acquire"), (0.4, "w2", "release")]:
        log.record(actor, kind, t=t)
    return log


CASES = [
    (KeyTable(ROWS, pattern="user:*"),
     "2 keys matching 'user:*'\n"
     "key     type    encoding  ttl       memory  value\n"
     "------  ------  --------  -----  ---------  ------------------------\n"
     'user:1  hash    listpack  ≤ 1 h       80 B  {name: "Ada", visits: 3}\n'
     'user:2  string  embstr    none        56 B  "bob"'),
    (KeyTable([], pattern="none:*"), "0 keys matching 'none:*'"),
    (StringView("greeting", "hello", encoding="embstr"),
     'greeting · string (embstr) · 5 chars · TTL none\n"hello"'),
    (StringView("visits", "42", encoding="int", ttl_ms=59_000),
     "visits · counter (int) · TTL ≤ 1 min\n42"),
    (HashView("user:1", {"visits": "3", "name": "Ada"}, encoding="listpack"),
     "user:1 · hash (listpack) · 2 fields · TTL none\n"
     "field   value\n------  -----\nname    \"Ada\"\nvisits  3"),
    (HashView("s", {"a": "1", "b": "2"}, field_ttls_ms={"a": 9000, "b": -1}),
     "s · hash · 2 fields · TTL none\n"
     "field  value  field ttl\n-----  -----  ---------\na      1      ≤ 10 s\nb      2      none"),
    (ListView("queue", ["a", "b", "c"]),
     'queue · list · 3 items · TTL none\nhead → [0] "a" [1] "b" [2] "c" ← tail'),
    (ListView("queue", ["a"], length=5), 'queue · list · 5 items · TTL none\nhead → [0] "a" … 4 more ← tail'),
    (SetView("tags", ["redis", "cache", "db"]),
     'tags · set · 3 members · TTL none\n{"cache", "db", "redis"}'),
    (ZSetView("board", [("bob", 20), ("alice", 30), ("carol", 40)], desc=True, bars=True),
     "board · zset · 3 members · highest first · TTL none\n"
     "rank  member  score\n"
     "----  ------  -----  --------------------\n"
     "   0  carol      40  ████████████████████\n"
     "   1  alice      30  ███████████████\n"
     "   2  bob        20  ██████████"),
    (ZSetView("z", [("b", 1), ("a", 1)]),
     "z · zset · 2 members · lowest first · TTL none\n"
     "rank  member  score\n----  ------  -----\n   0  a           1\n   1  b           1"),
    (StreamView("orders", [("1-1", {"item": "book"}), ("1-2", {"item": "pen"})],
                groups=[{"name": "ship", "consumers": 1, "pending": 1, "last-delivered-id": "1-1", "lag": 1}],
                pending=[{"id": "1-1", "group": "ship", "consumer": "alice", "idle_ms": 1200, "deliveries": 1}]),
     "orders · stream · 2 entries · 1 group · TTL none\n"
     "entries:\nid   fields\n---  -----------\n1-1  item=\"book\"\n1-2  item=\"pen\"\n"
     "consumer groups:\ngroup  consumers  pending  last delivered  lag\n"
     "-----  ---------  -------  --------------  ---\nship           1        1  1-1               1\n"
     "pending entries (delivered, not acknowledged):\nid   group  owner  idle    deliveries\n"
     "---  -----  -----  ------  ----------\n1-1  ship   alice  < 10 s           1"),
    (StreamView("ev", [("1795631693302-0", {"a": "1"})]),
     "ev · stream · 1 entries · 0 groups · TTL none\n"
     "(auto-generated ids shown by position: #1 is the first entry)\n"
     "entries:\nid  fields\n--  ------\n#1  a=1"),
    (BitmapView("flags", b"\x40\x01"),
     "flags · bitmap · 16 bits · 2 set (BITCOUNT) · TTL none\n"
     "offset   0 1 2 3 4 5 6 7\n     0   0 1 0 0 0 0 0 0\n     8   0 0 0 0 0 0 0 1"),
    (HyperLogLogView("visitors", 1003, exact=1000),
     "visitors · hyperloglog · TTL none\n"
     "estimate (PFCOUNT)  exact   error\n------------------  -----  ------\n              1003   1000  +0.30%"),
    (HyperLogLogView("visitors", 7),
     "visitors · hyperloglog · TTL none\n"
     "estimate (PFCOUNT)    exact  error\n------------------  -------  -----\n                 7  unknown"),
    (GeoView("shops", [("b", 13.36138934, 38.1155563), ("a", 15.0872, 37.5026)]),
     "shops · geo · 2 members · TTL none\n"
     "member  longitude  latitude\n------  ---------  --------\n"
     "a         15.0872   37.5026\nb         13.3614   38.1156"),
    (JSONView("doc", {"name": "Ada", "tags": ["a", "b"], "addr": {"city": "London"}}),
     'doc · json · TTL none\n$\n├── name: "Ada"\n├── tags\n│   ├── [0]: "a"\n│   └── [1]: "b"\n'
     '└── addr\n    └── city: "London"'),
    (VectorSetView("vs", size=3, dim=2, quant="int8", vectors={"a": [1, 0], "b": [0, 1], "c": [0, 0]}),
     "vs · vectorset · 3 elements · dim 2 · quantization int8 · TTL none\n"
     "2-D projection (PCA of VEMB):\n"
     "element      x      y\n-------  -----  -----\n"
     "a         0.71   0.24\nb        -0.71   0.24\nc         0.00  -0.47"),
    (ModuleInfoView("tk", "topk", {"k": 2, "width": 8, "depth": 3, "decay": 0.9}, top=[("x", 3), ("y", 1)]),
     "tk · topk · TTL none\nTOPK.INFO:\nfield  value\n-----  -----\nk          2\nwidth      8\n"
     "depth      3\ndecay    0.9\nTOPK.LIST WITHCOUNT:\nitem  count\n----  -----\nx         3\ny         1"),
    (Diff(Snapshot("*", "", 1000, (ROWS[0], KeyInfo("gone", "string", "raw", 5, 1, "1", expire_at_ms=900),
                                   KeyInfo("del", "string", "raw", None, 1, "1"))),
          Snapshot("*", "", 1001, (KeyInfo("user:2", "string", "embstr", None, 56, '"eve"', digest="x"),
                                   KeyInfo("new", "list", "listpack", None, 9, '["a"]')))),
     "changes in '*': 1 added, 1 changed, 1 expired, 1 deleted\n"
     "change   key     type    before  after\n"
     "-------  ------  ------  ------  ---------\n"
     'added    new     list            ["a"]\n'
     'changed  user:2  string  "bob"   "eve"\n'
     "expired  gone    string  1       (expired)\n"
     "deleted  del     string  1       (deleted)"),
    (Timeline(_log()),
     "5 events, 2 actors, max concurrent holders 1\n"
     "#  actor  event    detail\n-  -----  -------  ------\n"
     "1  w1     acquire\n2  w2     read\n3  w1     release\n4  w2     acquire\n5  w2     release\n\n"
     "w1  A═R··\nw2  ·r·AR\n    (A=acquire, R=release, r=read; ═ = holding)"),
]


@pytest.mark.parametrize("view, expected", CASES, ids=[type(v).__name__ + str(i) for i, (v, _) in enumerate(CASES)])
def test_exact_text(view, expected):
    assert repr(view) == expected


@pytest.mark.parametrize("view, expected", CASES[:1] + CASES[2:12],
                         ids=lambda x: type(x).__name__ if not isinstance(x, str) else "")
def test_html_and_text_show_the_same_keys_and_values(view, expected):
    with set_options(display="html"):
        page = view._repr_html_()
    assert page.startswith('<div class="rt">') and "<pre>" not in page
    for key in view.keys:
        assert f">{key}" in page or f"{key} ·" in page, key
    text_words = {w.rstrip(":") for w in re.findall(r"[A-Za-z][\w:]+", repr(view))} - {"TTL"}
    for word in text_words:
        assert word in page, word


def test_key_table_html_lists_exactly_the_text_keys():
    table = KeyTable(ROWS, pattern="user:*")
    with set_options(display="html"):
        html_keys = re.findall(r'<tr><td class="rt-text">([^<]+)</td>', table._repr_html_())
    text_keys = [line.split()[0] for line in repr(table).splitlines()[3:]]
    assert html_keys == text_keys == ["user:1", "user:2"]


def test_text_mode_html_is_the_escaped_text():
    view = StringView("k", "<b>")
    with set_options(display="text"):
        assert view._repr_html_() == "<pre>k · string · 3 chars · TTL none\n&quot;&lt;b&gt;&quot;</pre>"
    with set_options(display="html"):
        assert "<pre>" not in view._repr_html_()


def test_set_options_as_call_and_context(monkeypatch):
    monkeypatch.delenv("REDISTUTOR_DISPLAY", raising=False)
    assert get_options()["display"] == "html"
    with set_options(display="text", max_rows=1):
        assert get_options()["display"] == "text"
        assert repr(KeyTable(ROWS)).endswith("... 1 more")
    assert get_options()["display"] == "html" and get_options()["max_rows"] == 50
    monkeypatch.setenv("REDISTUTOR_DISPLAY", "text")
    assert get_options()["display"] == "text"
    old = set_options(display="html")
    try:
        assert get_options()["display"] == "html"
    finally:
        old.__exit__()
    with pytest.raises(Exception, match="not 'html' or 'text'"):
        set_options(display="fancy")


def test_to_frame_has_one_row_per_key():
    assert list(KeyTable(ROWS).to_frame()["key"]) == ["user:1", "user:2"]
    assert list(ZSetView("z", [("a", 1), ("b", 2)]).to_frame()["member"]) == ["a", "b"]
    assert len(Timeline(_log()).to_frame()) == 5


def test_html_is_deterministic_and_has_no_ids():
    v = GeoView("g", [("a", 1, 2), ("b", 3, 4)])
    with set_options(display="html"):
        a, b = v._repr_html_(), GeoView("g", [("b", 3, 4), ("a", 1, 2)])._repr_html_()
    assert a == b and " id=" not in a


# -- read from a real Redis ---------------------------------------------------------------------


def test_show_reads_every_type(r):
    r.hset("user:1", mapping={"name": "Ada"})
    r.rpush("q", "a", "b")
    r.sadd("s", "y", "x")
    r.zadd("z", {"a": 2, "b": 1})
    r.set("n", 5)
    r.setbit("bits", 3, 1)
    r.pfadd("hll", *range(100))
    r.geoadd("geo", (13.361389, 38.115556, "Palermo"))
    r.xadd("st", {"a": 1}, id="1-1")
    with set_options(display="text"):
        assert repr(show(r, "user:1")).endswith('name   "Ada"')
        assert repr(show(r, "q")).endswith('head → [0] "a" [1] "b" ← tail')
        assert repr(show(r, "s")).endswith('{"x", "y"}')
        assert "   0  b           1" in repr(show(r, "z"))
        assert repr(show(r, "n")).startswith("n · counter (int)")
        assert "     0   0 0 0 1 0 0 0 0" in repr(show(r, "bits", kind="bitmap"))
        assert "   100" in repr(show(r, "hll", kind="hyperloglog", exact=100))
        assert "Palermo    13.3614   38.1156" in repr(show(r, "geo", kind="geo"))
        assert "1-1  a=1" in repr(show(r, "st"))
        assert show(r, "*").keys == ["bits", "geo", "hll", "n", "q", "s", "st", "user:1", "z"]
        assert repr(show(r, "missing")) == "0 keys matching 'missing'"


def test_show_reads_module_types(r, redis_server):
    caps = redis_server.capabilities
    if not {"json.set", "bf.add", "vadd", "topk.add"} <= caps.commands:
        pytest.skip("the test server lacks JSON, Bloom or vector sets")
    r.json().set("doc", "$", {"a": [1, {"b": None}]})
    r.bf().add("bf", "x")
    r.topk().reserve("tk", 2, 8, 3, 0.9)
    r.topk().add("tk", "x", "x", "y")
    for name, vec in {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]}.items():
        r.vset().vadd("vs", vec, name)
    with set_options(display="text"):
        tree = "doc · json · TTL none\n$\n└── a\n    ├── [0]: 1\n    └── [1]\n        └── b: null"
        assert repr(show(r, "doc")) == tree
        assert "Number of items inserted      1" in repr(show(r, "bf"))
        assert repr(show(r, "tk")).endswith("x         2\ny         1")
        vs = repr(show(r, "vs"))
        assert vs.startswith("vs · vectorset · 3 elements · dim 3 · quantization int8")
        assert vs == repr(show(r, "vs"))  # the projection repeats
        assert [row.type for row in show(r, "*").rows] == ["bloom", "json", "topk", "vectorset"]


def test_capability_card_wraps_between_items_never_inside_one():
    from redistutor.capabilities import Capabilities

    caps = Capabilities((8, 2, 1), {"bf": "8.2.1", "ReJSON": "8.2.1"}, frozenset({"vadd", "json.set", "hexpire"}),
                        "local")
    card = caps.card_view()
    assert repr(card) == "✓ " + caps.card()
    assert caps.card() == ("Redis 8.2.1 (local) · modules: bf 8.2.1, ReJSON 8.2.1 · vector sets ✓ · JSON ✓ · "
                           "Bloom family ✗ · hash-field TTL ✓ · client tracking ✗")
    with set_options(display="html"):
        page = card._repr_html_()
    items = re.findall(r'<span class="rt-item">(.*?)</span>(?=<span class="rt-item">|</div>)', page)
    assert len(items) == 7 and '<div class="rt-items">' in page
    assert ".rt .rt-item { white-space: nowrap;" in page and "flex-wrap: wrap" in page


def test_geo_labels_stay_inside_the_drawing():
    geo = GeoView("shops", [("paris", 2.3522, 48.8566), ("lyon", 4.8357, 45.7640),
                            ("marseille", 5.3698, 43.2965), ("nantes", -1.5536, 47.2184)])
    with set_options(display="html"):
        page = geo._repr_html_()
    width = int(re.search(r'<svg width="(\d+)"', page).group(1))
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="10"( text-anchor="end")?>(\w+)</text>', page)
    assert {name for *_, name in labels} == {"paris", "lyon", "marseille", "nantes"}
    for x, y, end, name in labels:
        left = float(x) - len(name) * 6.0 if end else float(x)
        assert 0 <= left and left + len(name) * 6.0 <= width, name  # never clipped at an edge
        assert float(y) >= 10


@pytest.mark.parametrize("view, expected", CASES, ids=lambda x: type(x).__name__ if not isinstance(x, str) else "")
def test_html_views_are_accessible_without_colour(view, expected):
    """Every HTML table has header cells, and every ✓/✗ of the text is in the HTML too (the state
    is written, never carried by colour alone)."""
    with set_options(display="html"):
        page = view._repr_html_()
    tables, headers = page.count("<table"), page.count("<th")
    assert tables == 0 or headers >= tables, "a table without header cells"
    for mark in ("✓", "✗"):
        assert (mark in repr(view)) <= (mark in page), f"{mark} shown in text but not in HTML"
    assert "<svg" not in page or "<title>" in page or "aria-label" in page, "a drawing without a text label"
