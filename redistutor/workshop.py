"""Shared-server workshops: one Redis 8 for a room, an ACL user per learner.

``python -m redistutor workshop add learners.csv`` (the facilitator's ``$REDIS_URL`` names the
server and an admin user) creates one ACL user per learner whose keys and Pub/Sub channels are
confined to ``u:<learner>:*`` and who cannot run the server-wide commands (FLUSHALL, FLUSHDB,
CONFIG, DEBUG, SHUTDOWN, MODULE LOAD, SCRIPT FLUSH, ACL, CLIENT KILL, MONITOR, ...). It prints a
sheet of connection strings; a learner sets theirs as ``REDIS_URL`` and the notebooks attach under
their prefix (``redistutor.server.learner_root``). ``reset NAME`` removes a learner's keys,
``remove NAME`` the learner, ``list`` shows every learner with the memory their prefix uses.

What this does not give, and a facilitator should know:

* key names are not private: ``SCAN`` and ``KEYS`` list every key name on the server whatever a
  user's key patterns (only reading, writing and deleting are confined), so keep personal data out
  of key names;
* Redis has no per-user memory quota: run the server with ``maxmemory`` and ``noeviction`` and
  watch ``list``'s memory per learner;
* notebooks that need servers of their own (labs, clusters, kill -9 of a server, persistence
  restarts, CONFIG GET/SET) declare it (``requires={"own-servers": [...]}``) and, attached as a
  learner, stop at their setup cell with one sentence naming the notebooks that run here; the pattern
  guide's last table and ``python -m redistutor preflight`` say which those are.
"""

from __future__ import annotations

import csv
import re
import secrets
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from .exceptions import ConfigError
from .server import learner_root

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Everything but the server-wide and dangerous categories and the script-cache commands that act on
# everyone's scripts (not in those categories), then back the read-only introspection the runtime
# needs to probe a server (INFO, MODULE LIST, COMMAND ...) and per-connection settings.
LEARNER_COMMANDS = ("+@all", "-@admin", "-@dangerous", "-script|flush", "-script|kill", "-function|flush",
                    "-function|kill", "-function|delete", "-function|restore", "+info", "+module|list", "+command",
                    "+client|setname", "+client|getname", "+client|id", "+client|info",
                    "+client|tracking", "+client|trackinginfo", "+client|caching", "+memory|usage",
                    "+object", "+scan", "+type", "+ttl", "+pttl", "+latency|latest")


@dataclass(frozen=True)
class Learner:
    name: str
    password: str
    url: str


def _check_name(name: str) -> str:
    name = name.strip().lower()
    if not NAME_RE.match(name):
        raise ConfigError(f"Learner name {name!r} is not usable as a key prefix: use 1-32 lower-case letters, "
                          "digits, '-' or '_', starting with a letter or digit.")
    return name


def learner_url(admin_url: str, name: str, password: str) -> str:
    """The learner's REDIS_URL: the facilitator's host, port, db and scheme with the learner's user."""
    parts = urllib.parse.urlparse(admin_url)
    netloc = f"{urllib.parse.quote(name)}:{urllib.parse.quote(password)}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunparse((parts.scheme, netloc, parts.path, "", "", ""))


def rules(name: str, password: str) -> list[str]:
    """The learner's ACL SETUSER rules: their password, their prefix for keys and channels, the
    commands above."""
    root = learner_root(name)
    # %R~rt:workshop:*: read (never write) the facilitator's flags, e.g. held-back solutions (redistutor.progress).
    return ["reset", "on", f">{password}", f"~{root}*", "%R~rt:workshop:*", "resetchannels", f"&{root}*",
            *LEARNER_COMMANDS]


def add(admin: redis.Redis, admin_url: str, names: Iterable[str]) -> list[Learner]:
    """Create (or re-create, with a new password) one confined ACL user per learner."""
    out = []
    for raw in names:
        name = _check_name(raw)
        if name == "default":
            raise ConfigError("'default' is Redis's own user: give the learner another name.")
        password = secrets.token_urlsafe(18)
        admin.execute_command("ACL", "SETUSER", name, *rules(name, password))
        out.append(Learner(name, password, learner_url(admin_url, name, password)))
    return out


def learners(admin: redis.Redis) -> list[str]:
    """The learner users on the server: every ACL user confined to a u:<name>:* prefix."""
    found = []
    for user in admin.acl_list():
        text = user if isinstance(user, str) else user.decode()
        m = re.match(r"^user (\S+) .*~u:\1:\*", text)
        if m:
            found.append(m.group(1))
    return sorted(found)


def reset(admin: redis.Redis, name: str, *, keep_progress: bool = True) -> int:
    """Delete every key under the learner's prefix (but their progress-board row, unless
    ``keep_progress=False``); returns how many."""
    root = learner_root(_check_name(name))
    removed = 0
    batch: list[str] = []
    for key in admin.scan_iter(match=f"{root}*", count=1000):
        if keep_progress and key == f"{root}progress":  # redistutor.progress.row_key
            continue
        batch.append(key)
        if len(batch) >= 500:
            removed += admin.unlink(*batch)
            batch = []
    if batch:
        removed += admin.unlink(*batch)
    return removed


def remove(admin: redis.Redis, name: str) -> int:
    """Delete the learner's keys and ACL user, and disconnect them; returns keys removed."""
    name = _check_name(name)
    if name not in learners(admin):
        raise ConfigError(f"{name!r} is not a learner on this server: `python -m redistutor workshop list` "
                          "shows who is.")
    removed = reset(admin, name, keep_progress=False)
    admin.acl_deluser(name)
    return removed


def memory_by_learner(admin: redis.Redis) -> dict[str, tuple[int, int]]:
    """{learner: (keys, bytes)} summed from MEMORY USAGE over each learner's prefix."""
    out = {}
    for name in learners(admin):
        keys = list(admin.scan_iter(match=f"{learner_root(name)}*", count=1000))
        used = sum(admin.memory_usage(k) or 0 for k in keys)
        out[name] = (len(keys), used)
    return out


def read_names(path: Path) -> list[str]:
    """Learner names from a CSV: a ``name`` column if there is a header with one, else the first column."""
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = header.index("name") if "name" in header else 0
    body = rows[1:] if "name" in header else rows
    return [row[column] for row in body if row and row[column].strip()]


def sheet(learners_: Sequence[Learner]) -> str:
    """The connection strings to hand out, one learner per line (CSV: name,REDIS_URL)."""
    return "\n".join(["name,REDIS_URL"] + [f"{x.name},{x.url}" for x in learners_])


# -- command line ---------------------------------------------------------------------------------

USAGE = """usage: python -m redistutor workshop add LEARNERS.csv | list | reset NAME | remove NAME
       python -m redistutor workshop board [--csv FILE] | solutions [hold|release] [NOTEBOOK]

The facilitator's REDIS_URL names the shared server and a user allowed to run ACL commands."""


def main(args: list[str], admin_url: str | None) -> int:
    if not admin_url:
        print("redistutor: the workshop commands work on the server named by REDIS_URL: set it to the "
              "shared server's URL with an admin user.", file=sys.stderr)
        return 2
    from . import progress  # the progress board, held-back solutions, report-only users

    board = args[:1] in (["board"], ["solutions"]) or args[1:2] in (["--progress"], ["--report-only"])
    if not args or not (progress.usage_ok(args) if board else
                        args[0] in ("add", "list", "reset", "remove") and (args[0] == "list" or len(args) == 2)):
        print(progress.USAGE if board else USAGE, file=sys.stderr)
        return 2
    admin = redis.Redis.from_url(admin_url, decode_responses=True, socket_timeout=5)
    try:
        if board:
            progress.main(args, admin, admin_url)
        elif args[0] == "add":
            print(sheet(add(admin, admin_url, read_names(Path(args[1])))))
        elif args[0] == "list":
            print("learner,keys,bytes")
            for name, (keys, used) in memory_by_learner(admin).items():
                print(f"{name},{keys},{used}")
        elif args[0] == "reset":
            print(f"[redistutor] removed {reset(admin, args[1])} key(s) of {args[1]}")
        else:
            print(f"[redistutor] removed {args[1]} and {remove(admin, args[1])} key(s)")
    except ConfigError as exc:
        print(f"redistutor: {exc.message}", file=sys.stderr)
        return 1
    except redis.exceptions.RedisError as exc:
        print(f"redistutor: the shared server refused ({exc}): REDIS_URL must name the facilitator's admin user, "
              "allowed to run ACL SETUSER and ACL LIST and to read every key.", file=sys.stderr)
        return 1
    finally:
        admin.close()
    return 0
