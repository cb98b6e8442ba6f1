"""redistutor.explain / %redis_help and the commands index, on a real server."""

from __future__ import annotations

import html

import pytest

from redistutor import explain
from redistutor import server as server_module
from redistutor.commands import (
    ROOT,
    command_docs,
    commands_in,
    commands_markdown,
    source_module_docs,
    syntax,
)
from redistutor.exceptions import ConfigError


def test_core_command_help_comes_from_the_servers_command_docs(redis_server, r):
    help_ = explain("zadd", redis_server)
    docs = command_docs(r, "ZADD")["ZADD"]
    fields = dict(help_.fields())
    assert fields["summary"] == docs["summary"] and fields["complexity"] == docs["complexity"]
    assert fields["since"] == docs["since"] and fields["group"] == "sorted-set"
    assert fields["syntax"] == "ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]"
    assert fields["page"] == "https://redis.io/docs/latest/commands/zadd/"
    assert "23-leaderboards" in help_.notebooks  # the notebooks that use it, from their code
    assert docs["summary"] in repr(help_) and html.escape(docs["summary"]) in help_._html()  # text and HTML


def test_subcommands_and_multiple_tokens(redis_server):
    fields = dict(explain("client   tracking", redis_server).fields())
    assert fields["syntax"].startswith(
        "CLIENT TRACKING <ON | OFF> [REDIRECT client-id] [PREFIX prefix [PREFIX prefix ...]]")
    assert "05-client-side-caching" in explain("CLIENT TRACKING", redis_server).notebooks


def test_vector_set_commands_from_the_redis_source_else_one_sentence(redis_server):
    help_ = explain("VSIM", redis_server)
    if source_module_docs():  # the source tarball the runtime built the server from
        fields = dict(help_.fields())
        assert fields["from"].startswith("modules/vector-sets/commands.json")
        assert "[FILTER expression]" in fields["syntax"] and fields["since"] == "8.0.0"
    else:
        assert not help_.available and "https://redis.io/docs/latest/commands/vsim/" in repr(help_)


def test_module_command_without_docs_says_so_and_links_its_page(redis_server):
    help_ = explain("JSON.SET", redis_server)
    assert not help_.available
    assert dict(help_.fields())["help"] == ("No help is available for JSON.SET (module ReJSON) from this server: "
                                            "see https://redis.io/docs/latest/commands/json.set/")


def test_bad_input_gets_one_sentence_naming_the_fix(redis_server, monkeypatch):
    with pytest.raises(ConfigError, match="COMMAND LIST names them all"):
        explain("ZADDD", redis_server)
    with pytest.raises(ConfigError, match=r"explain\('ZADD'\)"):
        explain("  ", redis_server)
    monkeypatch.setattr(server_module, "_by_name", {})
    with pytest.raises(ConfigError, match="start one first"):
        explain("ZADD")


def test_redis_help_magic_shows_the_same_view(redis_server):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "redistutor")
        shown = shell.run_line_magic("redis_help", "ZADD")
        assert repr(shown) == repr(explain("ZADD"))  # explain() without a server: the one started last
    finally:
        InteractiveShell.clear_instance()


def test_usage_rules_find_clients_scripts_and_modules_not_dicts():
    known = {"GET", "SET", "ZADD", "CLIENT TRACKING", "CLIENT", "JSON.SET", "VADD", "HSET"}
    code = """
d.get("x")                      # a dict, not Redis
r.zadd("k", {"a": 1})
self.r.client_tracking_on(prefix=["u:"])
r.json().set("doc", "$", {})
r.vset().vadd("v", [1.0], "e")
redis.call('HSET', KEYS[1], 'f', 1)
"""
    assert commands_in(code, known) == {"ZADD", "CLIENT TRACKING", "JSON.SET", "VADD", "HSET"}


def test_syntax_renders_optional_and_repeated_arguments():
    args = [{"name": "key", "type": "key"},
            {"name": "count", "type": "integer", "token": "COUNT", "flags": ["optional"]},
            {"name": "member", "type": "string", "flags": ["multiple"]}]
    assert syntax("SREM", args) == "SREM key [COUNT count] member [member ...]"


def test_the_commands_index_is_current(r):
    """docs/commands.md is generated (python -m redistutor commands); this fails when a notebook
    starts or stops using a command and the index was not regenerated."""
    written = (ROOT / "docs" / "commands.md").read_text()
    version = r.info("server")["redis_version"]
    if f"from Redis {version}'s" not in written:
        pytest.skip(f"docs/commands.md was generated on another Redis version than this server's {version}")
    assert written == commands_markdown(r) + "\n", "regenerate it: .venv/bin/python -m redistutor commands"
