"""``python -m redistutor provision``: make sure a Redis 8 (and its modules) is ready."""

from __future__ import annotations

import sys

from .provision import main as provision_main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "provision":
        print("usage: python -m redistutor provision", file=sys.stderr)
        return 2
    return provision_main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
