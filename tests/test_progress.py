"""Workshop progress on a real Redis 8 (redistutor.progress): two ACL learners run real exercises of
two notebooks through Exercise.check/evaluate, and the facilitator's board shows exactly that."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from redistutor import progress, set_options, workshop
from redistutor.check import Exercise, Hint
from redistutor.db import Database
from redistutor.exceptions import CheckFailed
from redistutor.exercises import cache_aside, tour
from redistutor.listing import Listing
from redistutor.server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["tour/lock_exercise", "tour/visits_exercise", "cache-aside/write_path"]


@pytest.fixture(scope="module")
def shared():
    """The facilitator's server: a private local one standing in for the room's Redis."""
    with RedisServer(name="progress-shared") as server:
        yield server


@pytest.fixture
def room(shared, monkeypatch):
    monkeypatch.delenv(progress.ENV_URL, raising=False)
    monkeypatch.delenv(progress.ENV_LEARNER, raising=False)
    admin = shared.client()
    ada, bob = workshop.add(admin, shared.url, ["ada", "bob"])
    yield admin, ada, bob
    for name in workshop.learners(admin):
        workshop.remove(admin, name)
    admin.flushall()
    admin.execute_command("ACL", "DELUSER", "cy")


def starter(*args):
    raise NotImplementedError


def lock_without_expiry(r, key, token, ttl_ms):
    return bool(r.setnx(key, token))  # wrong: no TTL


def visits_in_two_trips(r, key, visitors, ttl_s):
    r.sadd(key, *visitors)  # wrong: two round trips
    r.expire(key, ttl_s)


class Learner:
    """One learner's kernel: their client, their database, their exercises under their prefix."""

    def __init__(self, who):
        self.who, self.r = who, redis.Redis.from_url(who.url, decode_responses=True)
        self.db = Database()
        self.db.seed_users(20)
        root = f"u:{who.name}:"
        self.lock = tour.lock_exercise(self.r, prefix=root + "lock", threads=4)
        self.visits = tour.visits_exercise(self.r, prefix=root + "visits")
        self.rename = cache_aside.write_path(self.r, self.db, prefix=root + "ex2:user")

    def close(self):
        self.r.close()
        self.db.close()


def run_the_class(ada, bob):
    """ada: lock correct, visits incorrect twice, rename not attempted; bob: lock incorrect twice,
    visits not attempted, rename correct. Through check() where a learner would, evaluate() too."""
    a, b = Learner(ada), Learner(bob)
    try:
        with progress.reporting(ada.url):
            a.lock.check(tour.acquire)
            for _ in range(2):
                with pytest.raises(CheckFailed):
                    a.visits.check(visits_in_two_trips)
            a.rename.check(starter)
        with progress.reporting(bob.url):
            assert b.lock.evaluate(lock_without_expiry).outcome == "incorrect"
            with pytest.raises(CheckFailed):
                b.lock.check(lock_without_expiry)
            assert b.visits.evaluate(starter).outcome == "not attempted"
            b.rename.check(cache_aside.update_user_name)
    finally:
        a.close(), b.close()


def test_the_board_shows_exactly_what_each_learner_checked(room, tmp_path, capsys):
    admin, ada, bob = room
    run_the_class(ada, bob)
    assert "progress not recorded" not in capsys.readouterr().out
    board = progress.Board(admin)
    assert board.learners == ["ada", "bob"] and board.columns == COLUMNS
    assert board.grid() == [["ada", "✓", "✗ 2", "○"], ["bob", "✗ 2", "○", "✓"]]
    rows = {(c.learner, f"{c.notebook}/{c.exercise}"): (c.outcome, c.attempts, c.incorrect)
            for c in (board.cell(n, col) for n in board.learners for col in board.columns)}
    assert rows == {
        ("ada", COLUMNS[0]): ("correct", 1, 0), ("ada", COLUMNS[1]): ("incorrect", 2, 2),
        ("ada", COLUMNS[2]): ("not attempted", 0, 0), ("bob", COLUMNS[0]): ("incorrect", 2, 2),
        ("bob", COLUMNS[1]): ("not attempted", 0, 0), ("bob", COLUMNS[2]): ("correct", 1, 0)}
    # Each learner's rows live in their own hash, one field per exercise.
    assert sorted(admin.hkeys("u:ada:progress")) == sorted(COLUMNS)
    assert sorted(admin.hkeys("u:bob:progress")) == sorted(COLUMNS)
    assert repr(board).splitlines()[:5] == [
        "Progress board: 2 learner(s) · 3 exercise(s) · 2 correct · 0 stuck",
        "learner  tour/lock_exercise  tour/visits_exercise  cache-aside/write_path",
        "-------  ------------------  --------------------  ----------------------",
        "ada      ✓                   ✗ 2                   ○",
        "bob      ✗ 2                 ○                     ✓"]
    # The CSV holds the same cells, one row per learner x exercise in board order.
    out = board.to_csv(tmp_path / "board.csv")
    with out.open() as f:
        lines = list(csv.reader(f))
    assert lines[0] == list(progress.Board.CSV_COLUMNS)
    assert [r[:7] for r in lines[1:]] == [
        ["ada", "tour", "lock_exercise", "correct", "1", "0", ""],
        ["ada", "tour", "visits_exercise", "incorrect", "2", "2", ""],
        ["ada", "cache-aside", "write_path", "not attempted", "0", "0", ""],
        ["bob", "tour", "lock_exercise", "incorrect", "2", "2", ""],
        ["bob", "tour", "visits_exercise", "not attempted", "0", "0", ""],
        ["bob", "cache-aside", "write_path", "correct", "1", "0", ""]]
    assert lines[1:] == board.records()
    # first attempt is empty for not-attempted cells, a UTC time for the others
    assert [bool(r[7]) for r in lines[1:]] == [True, True, False, True, False, True]
    # HTML carries the same marks, in the same order, from the same data.
    with set_options(display="html"):
        page = board._repr_html_()
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    assert [re.findall(r">([^<]*)</td>", tr) for tr in body.split("<tr>")[1:]] == board.grid()
    with set_options(display="text"):
        assert board._repr_html_() == f"<pre>{progress.H.esc(repr(board))}</pre>"


def test_stuck_is_n_incorrect_in_a_row_or_minutes_since_the_first_attempt(room):
    admin, ada, bob = room
    run_the_class(ada, bob)
    record = json.loads(admin.hget("u:ada:progress", COLUMNS[1]))
    tried = record["tried"]
    assert tried > 0 and record["since"] == tried  # the run of incorrect checks began with the first attempt
    assert not progress.Board(admin, now=tried + 599).cell("ada", COLUMNS[1]).stuck  # 2 < 3 in a row
    late = progress.Board(admin, now=tried + 600)
    assert [(c.learner, c.exercise) for c in late.stuck()] == [("ada", "visits_exercise"), ("bob", "lock_exercise")]
    assert late.cell("ada", COLUMNS[1]).mark == "✗ 2 !" and late.cell("ada", COLUMNS[0]).mark == "✓"
    strict = progress.Board(admin, now=tried, stuck_attempts=2)
    assert [c.exercise for c in strict.stuck()] == ["visits_exercise", "lock_exercise"]
    with set_options(display="html"):
        assert strict._repr_html_().count("background:#ffebe9") == 2
    # A correct answer clears the run of incorrect ones: no longer stuck, attempts counted on.
    a = Learner(ada)
    with progress.reporting(ada.url):
        a.visits.check(tour.add_visits)
    after = progress.Board(admin, now=tried + 3600, stuck_attempts=2).cell("ada", COLUMNS[1])
    assert (after.outcome, after.attempts, after.incorrect, after.stuck) == ("correct", 3, 0, False)
    # A new incorrect check starts a new run: ✗ shows all attempts, the run is 1 long.
    with progress.reporting(ada.url):
        a.visits.evaluate(visits_in_two_trips)
    record = json.loads(admin.hget("u:ada:progress", COLUMNS[1]))
    again = progress.Board(admin, now=record["since"] + 599, stuck_attempts=2).cell("ada", COLUMNS[1])
    assert (again.mark, again.incorrect, again.tried, again.stuck) == ("✗ 4", 1, tried, False)
    assert progress.Board(admin, now=record["since"] + 600).cell("ada", COLUMNS[1]).stuck
    a.close()


def test_only_the_notebooks_asked_for(room):
    admin, ada, bob = room
    run_the_class(ada, bob)
    assert progress.Board(admin, notebooks=["01-cache-aside.ipynb"]).columns == ["cache-aside/write_path"]


def test_a_learner_writes_only_their_own_rows_and_cannot_release_solutions(room):
    admin, ada, bob = room
    a = redis.Redis.from_url(ada.url, decode_responses=True)
    progress.hold(admin)
    for what, call in {
        "another's row": lambda: a.hset("u:bob:progress", "tour/lock_exercise", "{}"),
        "another's row by script": lambda: a.eval(progress.LUA_RECORD, 1, "u:bob:progress", "tour/x", "correct", "0"),
        "release": lambda: a.hset(progress.HOLD_KEY, "*", "released"),
        "delete the flags": lambda: a.delete(progress.HOLD_KEY),
    }.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
        assert not admin.exists("u:bob:progress") and admin.hgetall(progress.HOLD_KEY) == {"*": "held"}, what
    assert a.hgetall(progress.HOLD_KEY) == {"*": "held"}  # reading the flags is allowed
    # Naming another learner does not help: the URL's user decides where the row goes.
    with progress.reporting(ada.url, learner="bob") as reporter:
        assert reporter.learner == "ada"
        tour.visits_exercise(a, prefix="u:ada:v").evaluate(tour.add_visits)
    assert admin.hkeys("u:ada:progress") == ["tour/visits_exercise"] and not admin.exists("u:bob:progress")
    a.close()


def test_held_solutions_say_so_until_released_and_hints_still_work(room):
    admin, ada, _ = room
    a = Learner(ada)
    shown = str(a.lock.solution())
    assert "def acquire" in shown and isinstance(a.lock.solution(), Listing)
    progress.hold(admin)
    # Reporting off: holding does not apply (only a workshop configuration turns it on).
    assert isinstance(a.lock.solution(), Listing)
    with progress.reporting(ada.url):
        held = a.lock.solution()
        assert isinstance(held, Hint) and str(held) == progress.HELD_SENTENCE and "def " not in repr(held)
        assert str(a.lock.hint(1)) == f"Hint 1/{len(a.lock.hints)}: {a.lock.hints[0]}"
        progress.release(admin, "00-tour")  # one notebook released, the others still held
        assert str(a.lock.solution()) == shown
        assert str(a.rename.solution()) == progress.HELD_SENTENCE
        progress.hold(admin, "tour")
        assert str(a.lock.solution()) == progress.HELD_SENTENCE
        progress.release(admin, "tour")
        progress.hold(admin)  # holding every notebook again forgets the earlier releases
        assert progress.holds(admin) == {"*": "held"} and str(a.lock.solution()) == progress.HELD_SENTENCE
        progress.release(admin)
        assert str(a.rename.solution()).startswith("def update_user_name")
        assert progress.holds(admin) == {}
    a.close()


def test_reporting_is_off_unless_configured(room, monkeypatch):
    admin, ada, _ = room
    monkeypatch.setenv("REDIS_URL", ada.url)  # attached to the shared server is not enough
    a = Learner(ada)
    info = admin.info("commandstats")
    before = {k: info.get(f"cmdstat_{k}", {}).get("calls", 0) for k in ("eval", "evalsha", "hset", "time")}
    assert progress.active() is None
    a.visits.check(tour.add_visits)
    a.rename.check(cache_aside.update_user_name)
    info = admin.info("commandstats")
    after = {k: info.get(f"cmdstat_{k}", {}).get("calls", 0) for k in before}
    assert after == before and not list(admin.scan_iter(match="u:*:progress"))
    # The variable turns it on, read at each check (a running kernel picks it up).
    monkeypatch.setenv(progress.ENV_URL, ada.url)
    a.visits.check(tour.add_visits)
    assert admin.hkeys("u:ada:progress") == ["tour/visits_exercise"]
    a.close()


def room_url(admin) -> str:
    """The facilitator's URL with the default user: no learner name in it."""
    kw = admin.connection_pool.connection_kwargs
    return f"redis://:{kw['password']}@{kw['host']}:{kw['port']}"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("why", ["down", "wrong password", "not a URL", "no learner"])
def test_a_failed_report_never_changes_the_check(room, capsys, why):
    admin, ada, _ = room
    a = Learner(ada)
    url, start, reason = {
        "down": (f"redis://ada:x@127.0.0.1:{_closed_port()}", "redis://***@127.0.0.1:",
                 "cannot reach the progress server"),
        "wrong password": (ada.url.replace(ada.password, "not-the-password"), "redis://***@127.0.0.1:",
                           "refused the learner's user"),
        "not a URL": ("redis://[::1", "redis://[::1", "is not a workshop name"),
        "no learner": (room_url(admin), "redis://***@127.0.0.1:", "learner name '' is not a workshop name"),
    }[why]
    with progress.reporting(url):
        a.visits.check(tour.add_visits)  # correct: no exception
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("✓ a batch of visits") and len(out) == 2
        assert out[1].startswith(f"[redistutor] progress not recorded at {start}") and reason in out[1], out[1]
        with pytest.raises(CheckFailed):
            a.visits.check(visits_in_two_trips)  # incorrect stays incorrect
        assert capsys.readouterr().out.count("progress not recorded") == 1
        result = a.lock.evaluate(starter)
        assert result.outcome == "not attempted" and "progress not recorded" in result.progress
        assert str(a.lock.solution()).startswith("def acquire")  # the flags cannot be read: shown
    assert not admin.exists("u:ada:progress")
    a.close()


def test_the_exercise_names_its_notebook_from_its_module_or_an_argument():
    plain = Exercise("Sum It", lambda answer: None, hints=["h"], solution="x")
    assert plain.notebook == "notebook"  # built outside redistutor: the building function names it
    assert plain.exercise_id == "test_the_exercise_names_its_notebook_from_its_module_or_an_argument"
    named = Exercise("Sum It", lambda answer: None, hints=["h"], solution="x", notebook="01-cache-aside.ipynb")
    assert named.notebook == "cache-aside"
    built = cache_aside.batch_read(None, None)
    assert (built.notebook, built.exercise_id) == ("cache-aside", "batch_read")
    assert built.position < cache_aside.write_path(None, None).position


def test_a_report_only_learner_reports_and_reads_the_flags_and_nothing_else(room, shared):
    admin, _, _ = room
    (cy,) = progress.add_reporters(admin, shared.url, ["cy"])
    assert progress.Board(admin).grid() == [["ada"], ["bob"], ["cy"]]  # listed from the ACL before any report
    c = redis.Redis.from_url(cy.url, decode_responses=True)
    for call in (lambda: c.set("u:cy:other", "1"), lambda: c.get("u:ada:progress"), lambda: c.hset(
            "u:ada:progress", "x", "1"), lambda: c.hset(progress.HOLD_KEY, "*", "released")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    progress.hold(admin, "tour")
    with progress.reporting(cy.url):
        ex = tour.visits_exercise(admin, prefix="cy-own-server")  # the notebook's own (private) server
        assert ex.evaluate(tour.add_visits).progress == ""
        assert str(ex.solution()) == progress.HELD_SENTENCE
    board = progress.Board(admin)
    assert "cy" in board.learners and board.cell("cy", "tour/visits_exercise").mark == "✓"
    c.close()


class _Run:
    def __init__(self, returncode, stdout):
        self.returncode, self.stdout = returncode, stdout


@pytest.fixture
def cli(shared, monkeypatch, capsys):
    """``python -m redistutor workshop ...`` in this process (the board test also runs it for real)."""
    from redistutor.__main__ import main

    monkeypatch.setenv("REDIS_URL", shared.url)

    def run(*args):
        capsys.readouterr()
        code = main(["workshop", *args])
        return _Run(code, capsys.readouterr().out)

    return run


def test_the_command_line_prints_the_board_exports_csv_and_holds_solutions(room, shared, tmp_path, cli):
    admin, ada, bob = room
    run_the_class(ada, bob)
    out = tmp_path / "board.csv"
    env = {**os.environ, "REDIS_URL": shared.url}
    env.pop(progress.ENV_URL, None)
    run = subprocess.run([sys.executable, "-m", "redistutor", "workshop", "board", "--csv", str(out)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    board = progress.Board(admin)
    assert run.stdout == f"{board!r}\n[redistutor] wrote {out}\n"
    with out.open() as f:
        assert list(csv.reader(f))[1:] == board.records()
    run = cli("solutions", "hold", "01-cache-aside")
    assert run.returncode == 0 and run.stdout == "solutions: cache-aside held\n"
    assert progress.holds(admin) == {"cache-aside": "held"}
    run = cli("solutions", "release")
    assert run.stdout == "solutions: all released\n" and progress.holds(admin) == {}
    assert cli("solutions", "open").returncode == 2
    names = tmp_path / "names.csv"
    names.write_text("name\ndee\n")
    run = cli("add", "--progress", str(names))
    head, line = run.stdout.splitlines()
    assert head == "name,REDIS_URL,REDISTUTOR_PROGRESS_URL"
    name, url, progress_url = line.split(",")
    dee = redis.Redis.from_url(url, decode_responses=True)
    assert name == "dee" and url == progress_url and dee.acl_whoami() == "dee"
    dee.close()
    run = cli("add", "--report-only", str(names))
    head, line = run.stdout.splitlines()
    assert head == "name,REDISTUTOR_PROGRESS_URL"
    assert admin.acl_getuser("dee")["keys"] == ["~u:dee:progress", "%R~rt:workshop:*"]  # re-created report-only
    admin.acl_deluser("dee")


@pytest.mark.slow  # a real kernel: about 10-15 s on 2 cores
def test_the_facilitator_notebook_runs_on_a_demo_room(monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for var in ("REDIS_URL", progress.ENV_URL):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REDISTUTOR_DISPLAY", "text")
    monkeypatch.setenv("REDISTUTOR_BOARD_CSV", str(tmp_path / "board.csv"))
    nb = nbformat.read(ROOT / "workshop" / "facilitator.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "workshop")}}).execute()
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "ada      ✓                   ✓                     ✓" in text
    assert "bob      ✗ 3 !               ✓                     ○" in text
    assert "solutions: cache-aside held" in text and progress.HELD_SENTENCE in text
    with (tmp_path / "board.csv").open() as f:
        rows = [r[:7] for r in csv.reader(f)][1:]
    assert rows[3] == ["bob", "tour", "lock_exercise", "incorrect", "3", "3", "yes"] and len(rows) == 6


def test_a_url_without_a_user_reports_as_the_named_learner(room, monkeypatch):
    admin, _, _ = room
    monkeypatch.setenv(progress.ENV_LEARNER, "Ada")
    with progress.reporting(room_url(admin)) as reporter:
        assert reporter.learner == "ada"
        assert tour.visits_exercise(admin, prefix="own").evaluate(starter).progress == ""
    assert json.loads(admin.hget("u:ada:progress", "tour/visits_exercise"))["outcome"] == "not attempted"


def test_live_rereads_the_board_each_round(room, monkeypatch, capsys):
    admin, ada, bob = room
    board = progress.Board(admin)
    assert board.learners == ["ada", "bob"] and board.columns == []
    reads = []
    real = progress.Board.refresh

    def counted(self):
        reads.append(1)
        if len(reads) == 2:  # a learner checks between the first and second refresh
            a = redis.Redis.from_url(ada.url, decode_responses=True)
            with progress.reporting(ada.url):
                tour.visits_exercise(a, prefix="u:ada:live").evaluate(tour.add_visits)
            a.close()
        return real(self)

    monkeypatch.setattr(progress.Board, "refresh", counted)
    assert board.live(every=0, rounds=3) is board
    assert len(reads) == 3 and board.grid() == [["ada", "✓"], ["bob", ""]]
    shown = capsys.readouterr().out.split("Progress board: ")[1:]
    assert len(shown) == 4 and "0 correct" in shown[1] and "1 correct" in shown[2]


def test_reset_keeps_a_learners_board_row_and_remove_drops_it(room):
    admin, ada, bob = room
    run_the_class(ada, bob)
    admin.set("u:ada:scratch", "1")
    before = admin.hgetall("u:ada:progress")
    assert workshop.reset(admin, "ada") >= 1 and not admin.exists("u:ada:scratch")
    assert admin.hgetall("u:ada:progress") == before and progress.Board(admin).grid()[0][1] == "✓"
    workshop.remove(admin, "ada")
    assert not admin.exists("u:ada:progress") and progress.Board(admin).learners == ["bob"]


@pytest.mark.slow  # a real kernel: about 10-15 s on 2 cores
def test_a_real_notebook_on_a_private_server_reports_as_a_hub_learner(room, shared, monkeypatch):
    """The hub path: REDIS_URL unset (the tour starts its own Redis), only REDISTUTOR_PROGRESS_URL set,
    to a report-only user on the facilitator's server. Its exercises keep their starter code: ○."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    admin, _, _ = room
    (cy,) = progress.add_reporters(admin, shared.url, ["cy"])
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv(progress.ENV_URL, cy.url)
    monkeypatch.setenv("REDISTUTOR_DISPLAY", "text")
    nb = nbformat.read(ROOT / "notebooks" / "00-tour.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    board = progress.Board(admin, notebooks=["tour"])
    assert board.columns == ["tour/lock_exercise", "tour/trace_prediction", "tour/visits_exercise"]
    assert board.grid() == [["ada", "", "", ""], ["bob", "", "", ""], ["cy", "○", "○", "○"]]
    outputs = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])]
    assert not [t for t in outputs if "progress not recorded" in t]
