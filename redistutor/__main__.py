"""``python -m redistutor provision | clean | commands | workshop ...``.

* ``provision``: make sure a Redis 8 (and its modules) is ready.
* ``clean``: on the server named by ``$REDIS_URL``, remove the keys of notebooks whose kernel
  died without stopping (their namespace lease expired). Nobody else's keys are touched.
* ``commands``: regenerate ``docs/commands.md`` (the commands index) from a fresh local server's
  ``COMMAND DOCS`` and the notebooks' code.
* ``workshop add LEARNERS.csv | list | reset NAME | remove NAME``: one ACL user per learner on the
  shared server named by ``$REDIS_URL`` (redistutor.workshop); ``workshop board [--csv FILE]`` and
  ``workshop solutions [hold|release] [NOTEBOOK]``: the progress board and held-back solutions
  (redistutor.progress).
* ``workshop link --hub URL --tag TAG --repo URL``: the nbgitpuller link for a JupyterHub, pinned to a
  release tag; ``workshop loadtest (--hub URL --password P | --local) --users N``: the pre-workshop
  load test (redistutor.hub).
* ``preflight``: what a learner runs before class, one line per item with its fix (Python,
  packages, Redis 8 at ``$REDIS_URL`` or locally, modules, lab notebooks, the embedding model).
"""

from __future__ import annotations

import os
import sys

from .provision import main as provision_main

USAGE = "usage: python -m redistutor provision | clean | commands | preflight | workshop ..."


def commands() -> int:
    from .commands import ROOT, commands_markdown
    from .server import start_server

    server = start_server("commands-index", backend="local", quiet=True)
    try:
        text = commands_markdown(server.client())
    finally:
        server.stop()
    out = ROOT / "docs" / "commands.md"
    out.write_text(text + "\n")
    print(f"[redistutor] wrote {out.relative_to(ROOT)} ({text.count(chr(10)) + 1} lines)")
    return 0


def clean() -> int:
    from .exceptions import RedistutorError
    from .server import AttachedServer, clean_abandoned

    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        print("redistutor: clean works on the server named by REDIS_URL: set it first.", file=sys.stderr)
        return 2
    try:
        server = AttachedServer(url, name="clean")
        client = server._admin()
        client.ping()
        removed = clean_abandoned(client, server.root)
    except (RedistutorError, OSError) as exc:
        print(f"redistutor: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # redis errors: unreachable, wrong password, ...
        print(f"redistutor: cannot clean the server at REDIS_URL ({type(exc).__name__}: {exc}).",
              file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server._close_clients()
    keys = sum(removed.values())
    print(f"[redistutor] removed {keys} key(s) of {len(removed)} abandoned namespace(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["provision"]:
        return provision_main(args[1:])
    if args[:1] == ["clean"] and len(args) == 1:
        return clean()
    if args[:1] == ["commands"] and len(args) == 1:
        return commands()
    if args[:1] == ["preflight"] and len(args) == 1:
        from .preflight import main as preflight_main

        return preflight_main()
    if args[:2] == ["workshop", "link"]:  # JupyterHub workshops (redistutor.hub): no REDIS_URL needed
        from .hub import link_main

        return link_main(args[2:])
    if args[:2] == ["workshop", "loadtest"]:
        from .hub import loadtest_main

        return loadtest_main(args[2:])
    if args[:1] == ["workshop"]:
        from .workshop import main as workshop_main

        return workshop_main(args[1:], os.environ.get("REDIS_URL"))
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
