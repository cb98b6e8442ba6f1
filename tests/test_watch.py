"""The live watcher: sees changes, renders as text, and leaves nothing behind."""

from __future__ import annotations

import threading

from redistutor import set_options, watch
from redistutor.watch import CLIENT_NAME, THREAD_NAME


def _watch_clients(r):
    return [c for c in r.client_list() if c.get("name") == CLIENT_NAME]


def test_watcher_sees_changes(redis_server, r):
    with watch(redis_server, "user:*") as w:
        r.set(redis_server.key("user:1"), 1)
        r.hset(redis_server.key("user:2"), "a", 1)
        r.set(redis_server.key("other"), 1)
        assert w.wait(2)
        assert list(w.events) == [("user:1", "set"), ("user:2", "hset")]
        with set_options(display="text"):
            text = repr(w)
            assert w._repr_mimebundle_()["text/plain"] == text
        assert text.startswith("watching 'user:*' (running, keyspace notifications on)")
        assert "2 keys matching 'user:*'" in text and "2  user:2  hset" in text
    assert not w.running


def test_start_stop_50_times_leaves_no_thread_or_connection(redis_server, r):
    before = r.config_get("notify-keyspace-events")
    for _ in range(50):
        w = watch(redis_server, "k:*")
        assert w.running
        w.stop()
    w.stop()  # idempotent
    assert [t for t in threading.enumerate() if t.name == THREAD_NAME] == []
    assert _watch_clients(r) == []
    assert r.config_get("notify-keyspace-events") == before


def test_two_watchers_share_the_notification_setting(redis_server, r):
    a = watch(redis_server, "a:*")
    b = watch(redis_server, "b:*")
    a.stop()
    assert "K" in r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    b.stop()
    assert _watch_clients(r) == []


def test_widget_says_stopped_after_stop(redis_server, r):
    """The widget on the page redraws its status line when the watcher stops."""
    pytest = __import__("pytest")
    pytest.importorskip("ipywidgets")
    with set_options(display="html"):
        w = watch(redis_server, "w:*")
        widget = w.widget
        assert "(running, keyspace notifications on)" in widget.value
        w.stop()
        assert "(stopped, keyspace notifications on)" in widget.value
        assert "running" not in widget.value
        assert "stopped" in repr(w) and not w.running


def test_watcher_widget_tables_align_text_left_numbers_right(redis_server, r):
    pytest = __import__("pytest")
    pytest.importorskip("ipywidgets")
    with watch(redis_server, "al:*") as w:
        r.set(redis_server.key("al:1"), "x")
        assert w.wait(1)
        value = w.widget.value
    assert '<td class="rt-text">al:1</td>' in value and '<td class="rt-num">1</td>' in value
    assert ".rt table.rt-table td.rt-num" in value  # the stylesheet travels with the widget
