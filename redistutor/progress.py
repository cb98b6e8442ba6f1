"""Workshop progress: each exercise check reported to the facilitator's Redis, a board of who is
stuck where, and solutions held back until the facilitator releases them.

**Off unless configured.** A learner's kernel reports only when ``$REDISTUTOR_PROGRESS_URL`` names
the facilitator's server as that learner's own ACL user (``redistutor workshop add`` creates one per
learner; ``workshop add --progress`` prints the variable on the sheet). Without it no check sends
anything anywhere, and ``solution()`` is never held.

**Who may write what.** Each learner's outcomes live in one hash, ``u:<learner>:progress`` (one
field per exercise, ``<notebook>/<exercise>``, holding a small JSON record). The learner is the
URL's user, and that user's ACL (``redistutor.workshop.rules``) allows keys under ``u:<learner>:*``
only, so a learner can write their own rows and nobody else's. They can still edit their own rows:
the board is a teaching aid, not an exam. The facilitator's hold flags live in ``rt:workshop:solutions``,
outside every learner's prefix, which the learner ACL may read (``%R~rt:workshop:*``) but not write.

**Shared server or private ones.** On a shared server the learner's ``REDIS_URL`` and
``REDISTUTOR_PROGRESS_URL`` are the same URL. On a hub where every learner has a private Redis,
``REDIS_URL`` stays unset (notebooks start their own servers) and the hub sets only
``REDISTUTOR_PROGRESS_URL`` per user, to that user's learner URL on the facilitator's server (for a
hub, ``workshop add --report-only`` gives users that can only report and read the hold flags).

A report that fails (server down, wrong password) never changes a check's verdict: the check says in
one line that progress was not recorded, and why.

Facilitator side: ``Board(admin)`` (a view: learners × exercises, ``to_csv``, ``live()``),
``hold``/``release``/``holds``, and ``python -m redistutor workshop board [--csv FILE]`` /
``workshop solutions [hold|release] [NOTEBOOK]``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _html as H
from .check import CORRECT, INCORRECT, NOT_ATTEMPTED

ENV_URL = "REDISTUTOR_PROGRESS_URL"
ENV_LEARNER = "REDISTUTOR_LEARNER"  # only for a URL without a user (the rows are then not protected)
HOLD_KEY = "rt:workshop:solutions"  # hash: notebook (or "*") -> "held" | "released"
HOLD_READ_RULE = "%R~rt:workshop:*"  # what the learner ACL needs to read the hold flags
STUCK_ATTEMPTS = 3  # incorrect checks of one exercise, without a correct one since, that make it "stuck"
STUCK_MINUTES = 10  # or: this long since its first attempt (server clock), still not correct
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # redistutor.workshop.NAME_RE
HELD_SENTENCE = ("The facilitator is holding this solution back for now and will release it during the "
                 "session; the hints still work: ex.hint(1), ex.hint(2), ...")


def row_key(learner: str) -> str:
    """The hash holding a learner's outcomes: under their own prefix, so only they can write it."""
    return f"u:{learner}:progress"


def notebook_slug(name: str) -> str:
    """A notebook's slug from a module name, file name or slug: ``redistutor.exercises.cache_aside``,
    ``01-cache-aside.ipynb`` and ``cache-aside`` all give ``cache-aside``."""
    name = name.rsplit(".", 1)[-1] if name.startswith("redistutor.") else name
    name = re.sub(r"\.ipynb$", "", Path(name).name).lower().replace("_", "-")
    return re.sub(r"^\d+-", "", name)


def origin(frame: Any, notebook: str | None, name: str) -> tuple[str, str, int]:
    """(notebook slug, exercise id, position) of an Exercise built in ``frame``: the module that
    built it names the notebook (``redistutor.exercises.cache_aside`` -> ``cache-aside``), the
    factory function the exercise (``batch_read``), and the factory's line its place in the notebook."""
    module = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    code = frame.f_code if frame is not None else None
    slug = notebook_slug(notebook) if notebook else (notebook_slug(module) if module.startswith("redistutor.")
                                                     else "notebook")
    function = code.co_name if code is not None else "<module>"
    exercise = function if function.isidentifier() else (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                                                         or "exercise")
    return slug, exercise, code.co_firstlineno if code is not None and function.isidentifier() else 0


# -- the learner's side: reporting -------------------------------------------------------------------

# KEYS[1] = the learner's progress hash, ARGV[1] = "<notebook>/<exercise>", ARGV[2] = the outcome,
# ARGV[3] = the exercise's position in its notebook. Updates that exercise's record on the server's
# clock (laptop clocks disagree) and returns it as JSON: outcome (the last verdict), attempts,
# incorrect (in a row), first (first report), tried (first attempt), since (first of the current
# incorrect run), last (last report), pos. A "not attempted" after an attempt changes only the
# last-seen time: running the starter code again does not undo a verdict.
LUA_RECORD = """
local now = tonumber(redis.call('TIME')[1])
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local row
if raw then row = cjson.decode(raw) else
  row = {outcome = 'not attempted', attempts = 0, incorrect = 0, first = now, tried = 0}
end
if ARGV[2] ~= 'not attempted' then
  row.attempts = row.attempts + 1
  if ARGV[2] == 'incorrect' then
    row.incorrect = row.incorrect + 1
    if row.incorrect == 1 then row.since = now end
  else
    row.incorrect = 0
  end
  if row.tried == 0 then row.tried = now end
  row.outcome = ARGV[2]
end
row.last = now
row.pos = tonumber(ARGV[3])
local out = cjson.encode(row)
redis.call('HSET', KEYS[1], ARGV[1], out)
return out
"""


def _redact(url: str) -> str:
    return re.sub(r"//([^@/]*)@", "//***@", url)


class Reporter:
    """Reports outcomes for one learner to the server at ``url`` (their own ACL user's URL).

    The learner is the URL's user; only a URL without a user falls back to ``learner`` or
    ``$REDISTUTOR_LEARNER`` (then the server cannot stop one learner writing another's rows).
    """

    def __init__(self, url: str, learner: str | None = None) -> None:
        self.url = url
        try:
            parsed = urllib.parse.urlparse(url)
            user = urllib.parse.unquote(parsed.username) if parsed.username else ""
        except ValueError:  # e.g. "redis://[::1": reported by record(), never raised from a check
            user = ""
        self.learner = (user if user and user != "default" else (learner or os.environ.get(ENV_LEARNER, ""))).lower()
        self.where = _redact(url)
        self._client: redis.Redis | None = None

    def client(self) -> redis.Redis:
        if self._client is None:
            # Fail fast: a dead progress server costs a check one refused connection, not retries.
            self._client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=2,
                                                socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
        return self._client

    def record(self, notebook: str, exercise: str, outcome: str, position: int = 0) -> dict[str, Any]:
        """Record one check's outcome; returns the exercise's updated record."""
        if not _NAME_RE.match(self.learner):
            raise ValueError(f"the learner name {self.learner!r} is not a workshop name: put the learner's own "
                             f"user in {ENV_URL} (redis://NAME:PASSWORD@host:port, from the workshop sheet)")
        if outcome not in (CORRECT, INCORRECT, NOT_ATTEMPTED):
            raise ValueError(f"outcome {outcome!r} is not one of {CORRECT!r}, {INCORRECT!r}, {NOT_ATTEMPTED!r}")
        out = self.client().eval(LUA_RECORD, 1, row_key(self.learner), f"{notebook}/{exercise}", outcome,
                                 str(position))
        return cast(dict[str, Any], json.loads(cast(str, out)))

    def hold_state(self, notebook: str) -> bool:
        """Whether the facilitator holds back ``notebook``'s solutions (a per-notebook flag wins over "*")."""
        own, every = cast(list[str | None], self.client().hmget(HOLD_KEY, [notebook_slug(notebook), "*"]))
        return (own or every) == "held"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"Reporter({self.learner!r} -> {self.where})"


_override: list[Reporter | None] = []
_from_env: dict[str, Reporter] = {}


def active() -> Reporter | None:
    """The reporter in force: the innermost ``reporting(...)`` block, else ``$REDISTUTOR_PROGRESS_URL``
    (read at every check, so setting it in a running kernel takes effect), else None (off)."""
    if _override:
        return _override[-1]
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        return None
    if url not in _from_env:
        _from_env[url] = Reporter(url)
    return _from_env[url]


@contextmanager
def reporting(url: str | None, learner: str | None = None) -> Iterator[Reporter | None]:
    """Report (``url``) or not (None) inside the block, whatever the environment says."""
    reporter = Reporter(url, learner) if url else None
    _override.append(reporter)
    try:
        yield reporter
    finally:
        _override.pop()
        if reporter is not None:
            reporter.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return "the server refused the learner's user or password (check the URL on the workshop sheet)"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"the learner's user may not write there ({exc})"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        return f"cannot reach the progress server ({str(exc).rstrip('.')})"
    return f"{type(exc).__name__}: {exc}"


def report(exercise: Any, outcome: str) -> str | None:
    """Send one check's outcome if reporting is on. Returns None when it was recorded or reporting
    is off, else the one line to show: progress was not recorded, and why. Never raises."""
    reporter = active()
    if reporter is None:
        return None
    try:
        reporter.record(exercise.notebook, exercise.exercise_id, outcome, exercise.position)
    except Exception as exc:  # a report must never break the learner's check
        reporter.close()  # reconnect next time: the server may be back
        return f"[redistutor] progress not recorded at {reporter.where}: {_why(exc)}."
    return None


def held_back(exercise: Any) -> str | None:
    """The sentence to show instead of ``exercise``'s solution while the facilitator holds it back;
    None when it may be shown (reporting off, not held, or the flag unreadable: holding is a nudge,
    and the reference solutions ship in the package anyway)."""
    reporter = active()
    if reporter is None:
        return None
    try:
        return HELD_SENTENCE if reporter.hold_state(exercise.notebook) else None
    except Exception as exc:
        reporter.close()
        print(f"[redistutor] could not read whether solutions are held ({_why(exc)}); showing it.")
        return None


# -- the facilitator's side ----------------------------------------------------------------------------


def hold(admin: redis.Redis, notebook: str | None = None) -> None:
    """Hold back the solutions of ``notebook`` (every notebook if None, clearing earlier releases)."""
    if notebook is None:
        pipe = admin.pipeline()
        pipe.delete(HOLD_KEY)
        pipe.hset(HOLD_KEY, "*", "held")
        pipe.execute()
    else:
        admin.hset(HOLD_KEY, notebook_slug(notebook), "held")


def release(admin: redis.Redis, notebook: str | None = None) -> None:
    """Release the solutions of ``notebook`` (of every notebook if None)."""
    if notebook is None:
        admin.delete(HOLD_KEY)
    else:
        admin.hset(HOLD_KEY, notebook_slug(notebook), "released")


def holds(admin: redis.Redis) -> dict[str, str]:
    """{notebook or "*": "held" | "released"}, sorted."""
    return dict(sorted(cast(dict[str, str], admin.hgetall(HOLD_KEY)).items()))


def describe_holds(state: dict[str, str]) -> str:
    """One line for people: ``solutions: cache-aside held, every notebook released`` or ``all released``."""
    parts = [f"{'every notebook' if k == '*' else k} {v}" for k, v in state.items()]
    return "solutions: " + (", ".join(parts) or "all released")


def reporter_rules(name: str, password: str) -> list[str]:
    """ACL SETUSER rules for a learner who only reports (a hub learner with a private Redis): their
    own progress hash, read access to the hold flags, and the few commands reporting sends."""
    return ["reset", "on", f">{password}", f"~{row_key(name)}", HOLD_READ_RULE, "resetchannels", "-@all",
            "+ping", "+hello", "+auth", "+eval", "+evalsha", "+hget", "+hset", "+hmget", "+time",
            "+client|setinfo", "+client|setname"]


@dataclass(frozen=True)
class Cell:
    """One learner's record of one exercise (as the server holds it; times are server seconds)."""

    learner: str
    notebook: str
    exercise: str
    outcome: str = ""  # "" = never reported
    attempts: int = 0
    incorrect: int = 0  # incorrect checks since the last correct one
    tried: int = 0  # first attempt (0 = none)
    since: int = 0  # first check of the current run of incorrect ones (0 = none)
    last: int = 0
    pos: int = 0
    stuck: bool = False

    @property
    def mark(self) -> str:
        """✓ correct, ✗ N incorrect after N attempts (! when stuck), ○ not attempted, "" not reported."""
        if self.outcome == CORRECT:
            return "✓"
        if self.outcome == INCORRECT:
            return f"✗ {self.attempts}" + (" !" if self.stuck else "")
        return "○" if self.outcome == NOT_ATTEMPTED else ""


def _course_order() -> dict[str, int]:
    """{slug: notebook number} from notebooks/NN-slug.ipynb when this is a checkout (else empty)."""
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    out: dict[str, int] = {}
    for path in sorted(folder.glob("[0-9][0-9]-*.ipynb")):
        out.setdefault(notebook_slug(path.name), int(path.name[:2]))
    return out


def _learners_on(admin: redis.Redis) -> list[str]:
    """Learners with a progress hash, and workshop learners (ACL users) who have none yet."""
    from .workshop import learners

    found = {k.split(":")[1] for k in cast(Iterable[str], admin.scan_iter(match="u:*:progress", count=1000))}
    try:
        found |= set(learners(admin))  # shared-server learners (~u:<name>:*)
        for user in cast(list[str], admin.acl_list()):  # report-only learners (~u:<name>:progress)
            m = re.match(r"^user (\S+) .*~u:\1:progress(\s|$)", user)
            if m:
                found.add(m.group(1))
    except redis.exceptions.ResponseError:  # an admin who may not list ACL users: those who reported
        pass
    return sorted(n for n in found if _NAME_RE.match(n))


class Board(H.Renderable):
    """Learners × exercises, read from the facilitator's server (``admin`` may read every ``u:*``).

    Cells: ✓ correct · ✗ N last check incorrect, N attempts in all · ○ not attempted (starter code) · blank:
    never checked. A cell is **stuck** (! in text, red in HTML) when its last check was incorrect
    and either its last ``stuck_attempts`` checks were incorrect or the first of its current run of
    incorrect checks is ``stuck_minutes`` old on the server's clock. Rows are learners by name, columns exercises in
    notebook order (``notebooks`` keeps only those notebooks). ``refresh()`` re-reads,
    ``to_csv(path)`` exports, ``live()`` refreshes in place in a notebook.
    """

    def __init__(self, admin: redis.Redis, *, notebooks: Sequence[str] | None = None,
                 stuck_attempts: int = STUCK_ATTEMPTS, stuck_minutes: float = STUCK_MINUTES,
                 now: int | None = None) -> None:
        self.admin = admin
        self.only = [notebook_slug(n) for n in notebooks] if notebooks else None
        self.stuck_attempts, self.stuck_minutes = stuck_attempts, stuck_minutes
        self._now = now
        self.refresh()

    def refresh(self) -> Board:
        """Read every learner's hash again (one HGETALL each); returns self."""
        now = self._now if self._now is not None else int(self.admin.time()[0])
        self.now = now
        self.learners = _learners_on(self.admin)
        pipe = self.admin.pipeline(transaction=False)
        for name in self.learners:
            pipe.hgetall(row_key(name))
        cells: dict[tuple[str, str], Cell] = {}
        positions: dict[str, int] = {}
        for name, fields in zip(self.learners, pipe.execute()):
            for field, raw in sorted(cast(dict[str, str], fields).items()):
                notebook, _, exercise = field.partition("/")
                if self.only is not None and notebook not in self.only:
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue  # not a record this module wrote: ignored, not fatal
                column = f"{notebook}/{exercise}"
                outcome = rec.get("outcome", "")
                tried, since = int(rec.get("tried") or 0), int(rec.get("since") or 0)
                stuck = outcome == INCORRECT and (int(rec.get("incorrect", 0)) >= self.stuck_attempts or (
                    since > 0 and now - since >= self.stuck_minutes * 60))
                cells[(name, column)] = Cell(name, notebook, exercise, outcome, int(rec.get("attempts", 0)),
                                             int(rec.get("incorrect", 0)), tried, since, int(rec.get("last", 0)),
                                             int(rec.get("pos", 0)), stuck)
                positions.setdefault(column, int(rec.get("pos", 0)))
        order = _course_order()
        self.columns = sorted(positions, key=lambda c: (order.get(c.split("/")[0], 99), c.split("/")[0],
                                                        positions[c], c))
        self.cells = cells
        return self

    def cell(self, learner: str, column: str) -> Cell:
        notebook, _, exercise = column.partition("/")
        return self.cells.get((learner, column), Cell(learner, notebook, exercise))

    def grid(self) -> list[list[str]]:
        """One row per learner: name, then each column's mark (the text and HTML views' data)."""
        return [[name] + [self.cell(name, c).mark for c in self.columns] for name in self.learners]

    def stuck(self) -> list[Cell]:
        """The stuck cells, by learner then column."""
        return [self.cell(n, c) for n in self.learners for c in self.columns if self.cell(n, c).stuck]

    def rule(self) -> str:
        return (f"✓ correct · ✗ N: incorrect, N attempts in all · ○ not attempted · blank: not checked · "
                f"! stuck: {self.stuck_attempts} incorrect in a row, or incorrect since "
                f"≥ {self.stuck_minutes:g} min")

    def _summary(self) -> str:
        done = sum(c.outcome == CORRECT for c in self.cells.values())
        return (f"{len(self.learners)} learner(s) · {len(self.columns)} exercise(s) · {done} correct · "
                f"{len(self.stuck())} stuck")

    def _text(self) -> str:
        if not self.learners:
            return "Progress board: no learner has reported yet (reporting is on when a learner's kernel has " \
                   f"{ENV_URL} set)."
        table = H.text_table(["learner", *self.columns], self.grid())
        return f"Progress board: {self._summary()}\n{table}\n{self.rule()}"

    def _html(self) -> str:
        if not self.learners:
            return H.note(self._text())
        rows = []
        for name in self.learners:
            tds = [f'<td class="{H.TEXT}">{H.esc(name)}</td>']
            for c in self.columns:
                cell = self.cell(name, c)
                style = {CORRECT: "color:#1a7f37", INCORRECT: "color:#cf222e"}.get(cell.outcome, "color:#6e7781")
                if cell.stuck:
                    style = "background:#ffebe9;color:#cf222e;font-weight:bold"
                tip = (f"{cell.attempts} attempt(s), {cell.incorrect} incorrect in a row" if cell.outcome else
                       "not checked")
                tds.append(f'<td class="{H.TEXT}" style="{style}" title="{H.esc(tip)}">{H.esc(cell.mark)}</td>')
            rows.append(f"<tr>{''.join(tds)}</tr>")
        head = "".join(f'<th class="{H.TEXT}">{H.esc(h)}</th>' for h in ["learner", *self.columns])
        table = f'<table class="rt-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        return H.title(f"Progress board: {self._summary()}") + table + H.note(self.rule())

    CSV_COLUMNS = ("learner", "notebook", "exercise", "outcome", "attempts", "incorrect_in_a_row", "stuck",
                   "first_attempt_utc", "last_check_utc")

    def records(self) -> list[list[str]]:
        """One row per learner × exercise, in board order (blank outcome: never checked)."""
        def utc(t: int) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""

        out = []
        for name, column in itertools.product(self.learners, self.columns):
            c = self.cell(name, column)
            out.append([name, c.notebook, c.exercise, c.outcome, str(c.attempts), str(c.incorrect),
                        "yes" if c.stuck else "", utc(c.tried), utc(c.last)])
        return out

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`records` with a header row; returns the path."""
        out = Path(path)
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.CSV_COLUMNS)
            writer.writerows(self.records())
        return out

    def live(self, every: float = 10.0, rounds: int | None = None) -> Board:
        """Show the board and refresh it in place every ``every`` seconds, ``rounds`` times (None:
        until the kernel is interrupted). Works in text mode too (the text view is updated)."""
        try:
            from IPython import get_ipython
            from IPython.display import display
            handle = display(self, display_id=True) if get_ipython() is not None else None
        except ImportError:
            handle = None
        if handle is None:
            print(repr(self))
        count = 0
        try:
            while rounds is None or count < rounds:
                time.sleep(every)
                self.refresh()
                count += 1
                if handle is not None:
                    handle.update(self)
                else:
                    print(repr(self))
        except KeyboardInterrupt:
            pass
        return self


# -- a demo room: the facilitator notebook without a workshop server (and CI) --------------------------


@dataclass
class DemoRoom:
    """A private server with two learners who ran real exercises (see :func:`demo_room`)."""

    server: Any
    admin: redis.Redis
    learners: dict[str, Any]

    def stop(self) -> None:
        self.admin.close()
        self.server.stop()


def demo_room() -> DemoRoom:
    """Start a private Redis 8 with learners ``ada`` and ``bob`` (real ACL users) who check real
    exercises of the tour and of cache-aside, reporting as themselves: ada solves both of the tour's,
    and the cache-aside write path after one wrong try; bob gets the tour's lock wrong three times
    (stuck), solves its visits exercise, and runs cache-aside's write path with the starter code."""
    from .db import Database
    from .exercises import cache_aside, tour
    from .server import RedisServer
    from .workshop import add

    server = RedisServer(name="progress-demo").start()
    try:
        admin = server.client()
        people = {x.name: x for x in add(admin, server.url, ["ada", "bob"])}

        def starter(*args: Any) -> None:
            raise NotImplementedError

        def wrong_lock(r: redis.Redis, key: str, token: str, ttl_ms: int) -> bool:
            return bool(r.setnx(key, token))  # no expiry: the checker says why

        def wrong_rename(r: redis.Redis, db: Database, key: str, user_id: int, name: str) -> None:
            r.delete(key)  # invalidates before the database write: a reader refills the old row
            db.update_user(user_id, name=name)

        for name, plan in (("ada", ["lock", "visits", "rename-wrong", "rename"]),
                           ("bob", ["lock-wrong", "lock-wrong", "lock-wrong", "visits", "rename-starter"])):
            learner = people[name]
            r = redis.Redis.from_url(learner.url, decode_responses=True)
            db = Database()
            db.seed_users(20)
            root = f"u:{name}:"
            with reporting(learner.url):
                for step in plan:
                    if step.startswith("lock"):
                        ex = tour.lock_exercise(r, prefix=root + "lock", threads=4)
                        ex.evaluate(wrong_lock if step == "lock-wrong" else tour.acquire)
                    elif step == "visits":
                        tour.visits_exercise(r, prefix=root + "visits").evaluate(tour.add_visits)
                    else:
                        ex = cache_aside.write_path(r, db, prefix=root + "ex2:user")
                        ex.evaluate({"rename": cache_aside.update_user_name, "rename-wrong": wrong_rename,
                                     "rename-starter": starter}[step])
            r.close()
            db.close()
        return DemoRoom(server, admin, people)
    except BaseException:
        server.stop()
        raise


# -- command line: python -m redistutor workshop board | solutions ----------------------------------------

USAGE = """usage: python -m redistutor workshop board [--csv FILE]
       python -m redistutor workshop solutions [hold|release] [NOTEBOOK]
       python -m redistutor workshop add --progress|--report-only LEARNERS.csv"""


def add_reporters(admin: redis.Redis, admin_url: str, names: Iterable[str]) -> list[Any]:
    """One report-only ACL user per learner (:func:`reporter_rules`), for hub learners whose notebooks
    run on private servers: they can write their own progress hash and read the hold flags, nothing else."""
    import secrets

    from .workshop import Learner, _check_name, learner_url

    out = []
    for raw in names:
        name = _check_name(raw)
        password = secrets.token_urlsafe(18)
        admin.execute_command("ACL", "SETUSER", name, *reporter_rules(name, password))
        out.append(Learner(name, password, learner_url(admin_url, name, password)))
    return out


def usage_ok(args: list[str]) -> bool:
    """Whether ``args`` is one of :func:`main`'s commands, well formed."""
    board_ok = args[0] == "board" and (len(args) == 1 or (len(args) == 3 and args[1] == "--csv"))
    sol_ok = args[0] == "solutions" and (len(args) == 1 or (args[1] in ("hold", "release") and len(args) <= 3))
    add_ok = args[0] == "add" and len(args) == 3 and args[1] in ("--progress", "--report-only")
    return board_ok or sol_ok or add_ok


def main(args: list[str], admin: redis.Redis, admin_url: str) -> None:
    """``workshop board [--csv FILE]``, ``workshop solutions [hold|release] [NOTEBOOK]`` and
    ``workshop add --progress|--report-only LEARNERS.csv`` (the sheet with REDISTUTOR_PROGRESS_URL).
    ``redistutor.workshop.main`` checks the usage, connects, and turns errors into one sentence."""
    from .workshop import add, read_names

    if args[0] == "add":
        names = read_names(Path(args[2]))
        if args[1] == "--progress":  # shared server: one URL for the notebooks and the reports
            print("name,REDIS_URL," + ENV_URL)
            print("\n".join(f"{x.name},{x.url},{x.url}" for x in add(admin, admin_url, names)))
        else:  # hub: notebooks on private servers, only the reports come here
            print("name," + ENV_URL)
            print("\n".join(f"{x.name},{x.url}" for x in add_reporters(admin, admin_url, names)))
    elif args[0] == "board":
        board = Board(admin)
        print(repr(board))
        if len(args) == 3:
            print(f"[redistutor] wrote {board.to_csv(args[2])}")
    else:
        if len(args) > 1:
            (hold if args[1] == "hold" else release)(admin, args[2] if len(args) == 3 else None)
        print(describe_holds(holds(admin)))
