"""Errors that a learner can act on.

Every error carries one sentence that says what is wrong and how to fix it. In Jupyter the
sentence is all the learner sees (``_render_traceback_``), not a 40-line traceback; under pytest
the normal traceback is kept.
"""

from __future__ import annotations


class RedistutorError(Exception):
    """Base class: ``str(err)`` is one sentence naming the fix."""

    def __init__(self, message: str, *, details: str = ""):
        super().__init__(message)
        self.message = message
        # Extra lines (a server's log tail, a build log tail) shown under the sentence.
        self.details = details

    def __str__(self) -> str:
        if self.details:
            return f"{self.message}\n{self.details}"
        return self.message

    # IPython calls this instead of printing the traceback.
    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[31m{type(self).__name__}\x1b[0m: {self.message}"]
        if self.details:
            lines += ["", *self.details.splitlines()]
        return lines


class ConfigError(RedistutorError):
    """A setting (REDIS_URL, backend name, argument) is malformed."""


class ConnectError(RedistutorError):
    """A server was found (or named) but cannot be used: unreachable, wrong password."""


class ServerStartError(RedistutorError):
    """A local server did not come up; ``details`` holds its log tail."""


class PortInUseError(ServerStartError):
    """The port asked for is taken by another process."""

    def __init__(self, message: str, *, details: str = "", port: int | None = None,
                 listener: str = "tcp"):
        super().__init__(message, details=details)
        self.port = port
        # Which of the server's sockets could not bind: "tcp" (clients) or "cluster" (the bus).
        self.listener = listener


class NoServerError(RedistutorError):
    """No usable Redis 8 could be found or provisioned."""


class BuildError(NoServerError):
    """Building Redis from source failed; ``details`` holds the build log tail."""


class MissingCapability(RedistutorError):
    """The server lacks a version, module or command that a notebook needs."""

    def __init__(self, message: str, *, missing: list[str] | None = None):
        super().__init__(message)
        self.missing = list(missing or [])


class CheckFailed(AssertionError):
    """A learner-facing check failed; the message shows expected vs actual."""
