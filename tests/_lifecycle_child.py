"""A stand-in for a notebook kernel, driven by tests/test_lifecycle.py.

``python -m tests._lifecycle_child <scenario>`` starts what the scenario names, prints one JSON
line per step on stdout, and keeps running until its stdin closes (or it is killed), the way a
kernel keeps its servers between cells. Each scenario is what a learner's kernel does; the test
then interrupts it, kills it, or kills its guardian, and looks at what survives from outside.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def spin_worker(ctx) -> None:
    """A lab worker that runs until it is stopped (a long race cell), recording that it started."""
    ctx.record("started")
    while True:
        time.sleep(0.05)
        ctx.record("tick")


def endpoints(*servers) -> list[dict]:
    return [{"port": s.port, "password": s.password, "pid": s.pid} for s in servers]


def announce_when_joining(fields: dict) -> None:
    main = threading.main_thread().ident
    while True:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "join" and frame.f_code.co_filename.endswith("workers.py"):
                say(**fields)
                return
            frame = frame.f_back
        time.sleep(0.01)


def wait_for_stdin_eof() -> None:
    sys.stdin.read()


def interrupt() -> None:
    """A server, a Fleet and Workers; then a cell blocked in workers.join(), interrupted."""
    from redistutor import lab
    from redistutor.server import start_server

    server = start_server("interrupt", backend="local", modules=(), quiet=True)
    fleet = lab.Fleet(2).start()
    # Started by an earlier cell and left running: not the interrupted cell's work.
    background = lab.Workers(spin_worker, 1, nodes=[fleet["n2"]]).start()
    workers = lab.Workers(spin_worker, 2, nodes=[fleet["n1"]]).start()
    workers.wait_for("started")
    background.wait_for("started")
    ready = dict(ready=True, servers=endpoints(server, *fleet.nodes), workers=list(workers.pids.values()),
                 background=list(background.pids.values()))
    # Say "ready" only once the main thread is inside Workers.join, so the Interrupt lands in the
    # cell's wait (where a learner's Interrupt lands), never in the line before it.
    threading.Thread(target=announce_when_joining, args=(ready,), daemon=True).start()
    try:
        workers.join(timeout=600)  # the "cell": Jupyter's Interrupt lands here
        say(interrupted=False)
    except KeyboardInterrupt:
        # Ticks recorded after the interrupt prove SIGINT did not reach the earlier cell's worker
        # (one that got it dies in its next sleep, before recording again).
        def count() -> int:
            background.collect()
            return sum(1 for e in background.log.events if e.kind == "tick")

        before = count()
        ticks = 0
        deadline = time.monotonic() + 30
        while ticks < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
            ticks = count() - before
        say(interrupted=True, workers_alive=[p.is_alive() for p in workers.procs.values()],
            background_ticks_after=ticks, background_alive=[p.is_alive() for p in background.procs.values()])
    wait_for_stdin_eof()


def pause(kind: str) -> None:
    """Start something while REDISTUTOR_TEST_PAUSE_AT stops this process inside a spawn window."""
    if kind == "server":
        from redistutor.server import RedisServer

        RedisServer(modules=()).start()
    elif kind == "fleet":
        from redistutor import lab

        lab.Fleet(3).start()
    elif kind == "workers":
        from redistutor import lab

        lab.Workers(spin_worker, 2).start()
    elif kind == "probe":
        from redistutor import provision

        binary = provision.ensure().path
        mdir = provision._modules_dir()
        module = next(iter(sorted(mdir.glob("*.so")))) if mdir else binary
        provision._module_loads(binary, module)
    say(paused=None)  # not reached when the pause point fires
    wait_for_stdin_eof()


def guardian() -> None:
    """A server; the test kills the guardian, waits for its replacement, then kills us."""
    from redistutor import _guard
    from redistutor.server import RedisServer

    server = RedisServer(modules=()).start()
    say(ready=True, servers=endpoints(server), tmp=str(server._tmp), guardian=_guard.guardian_pid())
    for line in sys.stdin:
        if line.strip() == "guardian?":
            say(guardian=_guard.guardian_pid())


def database(how: str) -> None:
    """A SQLite stand-in left open: the process then exits normally (or is killed by the test)."""
    from redistutor.db import Database

    db = Database()
    db.seed_users(3)
    say(ready=True, tmp=str(db.path.parent))
    if how == "exit":
        return
    wait_for_stdin_eof()


def rerun() -> None:
    """The same setup cell run three times (as IPython would, one execution each)."""
    from redistutor import lab

    made = []
    for _ in range(3):
        made.append(lab.Fleet(2, name="redlock").start())
    say(ready=True, running=[len(f.up()) for f in made],
        pids=[n.pid for f in made for n in f.nodes if n.pid])
    wait_for_stdin_eof()


def ipython() -> None:
    """A real IPython shell runs setup cells again and again, then the Cleanup cell."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("from redistutor import lab", store_history=True)
    for _ in range(3):  # JupyterLab sends a cell id
        shell.run_cell("fleet = lab.Fleet(2).start()", store_history=True, cell_id="setup-cell")
    for _ in range(2):  # a front end without cell ids: the cell's source identifies it
        shell.run_cell("one = lab.Fleet(1).start()", store_history=True)
    # One run making two fleets keeps both (only *earlier runs* are replaced).
    shell.run_cell("pair = [lab.Fleet(1).start() for _ in range(2)]", store_history=True)
    say(step="setup cells re-run")
    sys.stdin.readline()
    shell.run_cell("stopped = lab.stop_all()", store_history=True)
    say(step="stop_all", stopped=shell.user_ns["stopped"])
    wait_for_stdin_eof()


def attach() -> None:
    """A notebook in attach mode (REDIS_URL) writes its keys without TTLs, like 06 does."""
    from redistutor.server import start_server

    server = start_server("06-atomic-updates", quiet=True)
    r = server.client()
    for i in range(12):
        r.set(server.key("account", i), 100)
    say(ready=True, namespace=server.namespace)
    wait_for_stdin_eof()


if __name__ == "__main__":
    scenario, *args = sys.argv[1:]
    globals()[scenario](*args)
