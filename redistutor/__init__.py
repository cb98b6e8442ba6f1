"""redistutor: learn production Redis patterns on a real Redis 8.

Notebooks import only these top-level names; patterns come from their own module
(``from redistutor.patterns.cache_aside import CacheAside``).
"""

from .check import Exercise  # exercise definitions in redistutor/exercises/*
from .exceptions import (  # what learners may see raised, each with a one-sentence fix
    CheckFailed,
    MissingCapability,
    RedistutorError,
)
from .server import (  # every notebook's setup cell
    AttachedServer,
    RedisServer,
    connect,
    start_server,
)

__version__ = "0.1.0"

__all__ = [
    "AttachedServer",
    "CheckFailed",
    "Exercise",
    "MissingCapability",
    "RedisServer",
    "RedistutorError",
    "__version__",
    "connect",
    "start_server",
]
