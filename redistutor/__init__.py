"""redistutor: learn production Redis patterns on a real Redis 8.

Notebooks import only these top-level names; patterns come from their own module
(``from redistutor.patterns.cache_aside import CacheAside``).
"""

from typing import Any

from . import (
    charts,  # one chart style: charts.figure(...), charts.finish(ax, summary=...)
    check,  # learner-facing checks: check.key_equals(server, "k", "v"), check.ttl_between(...)
)
from .check import Exercise  # exercise definitions in redistutor/exercises/*
from .commands import explain  # a command's help from the running server: explain("ZADD")
from .diff import changes, diff  # "what changed?": with changes(server, "user:*") as d: ...
from .events import EventLog  # one clock for race timelines and lab faults
from .exceptions import (  # what learners may see raised, each with a one-sentence fix
    CheckFailed,
    MissingCapability,
    RedistutorError,
)
from .keys import snapshot  # a Snapshot of a pattern, for diffs and tables
from .listing import show_code  # highlighted source: show_code(Lock.LUA_RELEASE)
from .options import get_options, set_options  # display="text" switch (call or with-block)
from .server import (  # every notebook's setup cell
    AttachedServer,
    RedisServer,
    connect,
    start_server,
)
from .sink import CommandStats, Sampler, Sink  # queue labs: who did what, invariants sampled, commandstats
from .tables import Table  # results that are not keys: trials, per-node state, measurements
from .timeline import Timeline, max_concurrent, run_threads  # race labs: N threads, one timeline
from .trace import trace  # record commands and round trips: with trace(r) as t: ...
from .viz import show, view  # show(server, "user:*") table; show(server, "user:1") typed view
from .watch import watch  # live view from keyspace notifications (ipywidgets, text fallback)

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext redistutor``: adds ``%redis_help ZADD`` (the same view as ``explain("ZADD")``)."""

    def redis_help(line: str):
        return explain(line.strip())

    ipython.register_magic_function(redis_help, magic_kind="line", magic_name="redis_help")


__all__ = [
    "AttachedServer",
    "CheckFailed",
    "CommandStats",
    "EventLog",
    "Exercise",
    "MissingCapability",
    "RedisServer",
    "RedistutorError",
    "Sampler",
    "Sink",
    "Table",
    "Timeline",
    "__version__",
    "changes",
    "charts",
    "check",
    "connect",
    "diff",
    "explain",
    "get_options",
    "max_concurrent",
    "run_threads",
    "set_options",
    "show",
    "show_code",
    "snapshot",
    "start_server",
    "trace",
    "view",
    "watch",
]
