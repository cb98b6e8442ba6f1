"""Mutation testing of redistutor/patterns/, one module at a time, with mutmut 3 (``./run mutate``).

For each pattern module ``<slug>`` this copies the package and the module's own tests
(tests/patterns/test_<slug>.py, and tests/exercises/test_<slug>.py if there is one) into a
scratch folder, runs ``mutmut run`` there (the working tree is never modified), and prints:

    redlock: 233/251 killed (92.8 %) · 14 message-string mutants not counted
      redistutor/patterns/redlock.py:176  validity = ttl_ms - elapsed_ms - drift_ms(ttl_ms)
                                      ->  validity = ttl_ms + elapsed_ms - drift_ms(ttl_ms)

Counted: every mutant mutmut makes (operators, numbers, conditions, arguments, removed calls),
except those that only change a string inside a ``raise`` or a print/warning call (mutmut
already skips docstrings). Lua scripts that are class constants are outside any function, so
mutmut does not mutate them: their bugs are pinned by the behaviour tests.

Usage: ``./run mutate [slug ...] [--jobs N] [--min 85] [--keep]``. Exit status 1 if a module
scores below ``--min``. Scratch folders: ``$REDISTUTOR_MUTATE_DIR`` (default
``/tmp/redistutor-mutate/<slug>``), removed after the run unless ``--keep`` (then
``cd`` there and ``mutmut show <name>`` / ``mutmut browse`` work). The procedure, and the
survivors that are equivalent: docs/mutation-testing.md, tests/patterns/mutation-survivors.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = ROOT / "redistutor" / "patterns"
MESSAGE_CALLS = {"print", "warn", "say", "info", "warning", "error", "debug", "exception"}
# mutmut's exit codes: the tests failed (1), pytest hit an internal error (3), or the tests hung
# until mutmut's timeout (36, or killed by SIGXCPU): a hang is a failure the tests detect.
KILLED = {1, 3, 36, 24, -24, 152, 255}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout", None: "not checked"}


def slugs_available() -> list[str]:
    return sorted(p.stem for p in PATTERNS.glob("*.py") if p.stem != "__init__")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def prepare(slug: str, work: Path) -> list[str]:
    """Copy what the module's tests need into ``work``; write its [tool.mutmut]. Returns the tests."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "redistutor", work / "redistutor", ignore=ignore)
    tests = [f"tests/patterns/test_{slug}.py"]
    if (ROOT / f"tests/exercises/test_{slug}.py").exists():
        tests.append(f"tests/exercises/test_{slug}.py")
    for rel in ["tests/__init__.py", "tests/conftest.py", "tests/helpers.py", "tests/nbval_sanitize.cfg",
                "tests/patterns/__init__.py", "tests/exercises/__init__.py", *tests]:
        src = ROOT / rel
        if src.exists():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    text = (ROOT / "pyproject.toml").read_text()
    settings = tomllib.loads(text).get("tool", {}).get("mutmut", {})
    if "[tool.mutmut]" in text:  # drop the repo's section; the generated one below replaces it
        head, _, tail = text.partition("[tool.mutmut]")
        rest = tail.split("\n[", 1)
        text = head + ("[" + rest[1] if len(rest) > 1 else "")
    settings.update(source_paths=["redistutor"], only_mutate=[f"redistutor/patterns/{slug}.py"],
                    pytest_add_cli_args_test_selection=tests, also_copy=["tests"])
    text += "\n[tool.mutmut]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in settings.items())
    (work / "pyproject.toml").write_text(text)
    return tests


def functions(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    """Every def in a module by name, methods included (mutmut's names are unique per module)."""
    return {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def original_def(tree: ast.Module, mangled: str):
    """``x_fn`` -> function fn; ``xǁClsǁmeth`` -> method meth of class Cls."""
    if mangled.startswith("xǁ"):
        cls, meth = mangled[2:].split("ǁ", 1)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == cls:
                return functions(node).get(meth)
        return None
    name = mangled[2:]
    return next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == name), None)


def ast_diffs(a, b, path):
    """Yield (old, new, ancestors) for every place where two ASTs differ."""
    if type(a) is not type(b):
        yield a, b, path
    elif isinstance(a, ast.AST):
        for f in a._fields:
            if not path and f == "name":
                continue
            yield from ast_diffs(getattr(a, f), getattr(b, f), path + [a])
    elif isinstance(a, list):
        if len(a) != len(b):
            yield a, b, path
        else:
            for x, y in zip(a, b):
                yield from ast_diffs(x, y, path)
    elif a != b:
        yield a, b, path


def is_text(node) -> bool:
    """A string literal or an f-string (or a list of them: an argument list)."""
    if isinstance(node, list):
        return bool(node) and all(is_text(n) for n in node)
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def is_message(diffs) -> bool:
    """True if the mutant only changes message text: a string in a raise or in a print/warning
    call, or the message argument of a raised exception replaced or dropped."""
    for old, _new, path in diffs:
        in_raise = any(isinstance(n, ast.Raise) for n in path)
        in_call = any(isinstance(n, ast.Call) and (getattr(n.func, "id", None) or getattr(n.func, "attr", None))
                      in MESSAGE_CALLS for n in path)
        string_changed = bool(path) and isinstance(path[-1], ast.Constant) and isinstance(old, str)
        message_replaced = in_raise and isinstance(path[-1] if path else None, ast.Call) and is_text(old)
        if not ((string_changed and (in_raise or in_call)) or message_replaced):
            return False
    return True


def classify(slug: str, work: Path) -> dict:
    mutated = work / "mutants" / "redistutor" / "patterns" / f"{slug}.py"
    meta = json.loads(mutated.with_name(f"{slug}.py.meta").read_text())["exit_code_by_key"]
    src_path = PATTERNS / f"{slug}.py"
    mut_src = mutated.read_text()
    mut_lines = mut_src.splitlines()
    mut_defs = functions(ast.parse(mut_src))
    orig_tree = ast.parse((work / "redistutor" / "patterns" / f"{slug}.py").read_text())
    orig_lines = (work / "redistutor" / "patterns" / f"{slug}.py").read_text().splitlines()
    out = {"killed": 0, "counted": 0, "messages": 0, "survivors": []}
    for key, code in sorted(meta.items(), key=lambda kv: natural(kv[0])):
        name = key.rsplit(".", 1)[1]
        mangled = name.rsplit("__mutmut_", 1)[0]
        orig, mut = mut_defs.get(mangled + "__mutmut_orig"), mut_defs.get(name)
        diffs = list(ast_diffs(orig, mut, [])) if orig is not None and mut is not None else []
        if diffs and is_message(diffs):
            out["messages"] += 1
            continue
        out["counted"] += 1
        if code in KILLED:
            out["killed"] += 1
            continue
        where, old_text, new_text = "?", "", ""
        src_def = original_def(orig_tree, mangled)
        if diffs and src_def is not None:
            first_old, _, first_path = diffs[0]
            anchor = first_old if hasattr(first_old, "lineno") else next(
                (n for n in reversed(first_path) if hasattr(n, "lineno")), orig)
            line = src_def.lineno + anchor.lineno - orig.lineno
            mline = mut.lineno + anchor.lineno - orig.lineno
            where = f"{src_path.relative_to(ROOT)}:{line}"
            old_text = orig_lines[line - 1].strip()
            new_text = mut_lines[mline - 1].strip().replace(name, src_def.name)
            if old_text == new_text:  # a multi-line statement: show the mutated node instead
                old_text = ast.unparse(diffs[0][0]) if isinstance(diffs[0][0], ast.AST) else repr(diffs[0][0])
                new_text = ast.unparse(diffs[0][1]) if isinstance(diffs[0][1], ast.AST) else repr(diffs[0][1])
        out["survivors"].append({"name": key, "status": STATUS.get(code, f"exit {code}"), "where": where,
                                 "old": old_text, "new": new_text})
    return out


def natural(key: str):
    head, _, n = key.rpartition("__mutmut_")
    return head, int(n) if n.isdigit() else 0


def run(slug: str, base: Path, jobs: int, keep: bool) -> dict | None:
    work = base / slug
    if not (ROOT / f"tests/patterns/test_{slug}.py").exists():
        print(f"{slug}: no tests/patterns/test_{slug}.py: every mutant would survive; write the tests first")
        return None
    tests = prepare(slug, work)
    mutmut = Path(sys.executable).with_name("mutmut")
    log = work / "mutmut.log"
    t0 = time.monotonic()
    print(f"{slug}: mutating redistutor/patterns/{slug}.py against {' '.join(tests)} ...", flush=True)
    with log.open("w") as fh:
        rc = subprocess.call([str(mutmut), "run", "--max-children", str(jobs)], cwd=work, stdout=fh,
                             stderr=subprocess.STDOUT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    meta = work / "mutants" / "redistutor" / "patterns" / f"{slug}.py.meta"
    if rc != 0 or not meta.exists():
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
        print(f"{slug}: mutmut failed (exit {rc}); the tests must pass unmutated first. Log tail ({log}):")
        print("\n".join("    " + line for line in tail))
        return None
    res = classify(slug, work)
    res["seconds"] = time.monotonic() - t0
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def report(slug: str, res: dict) -> float:
    score = 100.0 * res["killed"] / res["counted"] if res["counted"] else 100.0
    print(f"{slug}: {res['killed']}/{res['counted']} killed ({score:.1f} %) · "
          f"{res['messages']} message-string mutants not counted · {res['seconds']:.0f} s")
    for s in res["survivors"]:
        print(f"  {s['where']}  [{s['status']}]  {s['name'].rsplit('.', 1)[1]}")
        print(f"      {s['old']}")
        print(f"   -> {s['new']}")
    return score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument("slugs", nargs="*", help=f"pattern modules (default: all): {', '.join(slugs_available())}")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("REDISTUTOR_MUTATE_JOBS", "2")),
                    help="mutants tested at once (default 2)")
    ap.add_argument("--min", type=float, default=85.0, help="exit 1 if a module scores below this (%%)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders (mutmut show/browse)")
    args = ap.parse_args(argv)
    unknown = [s for s in args.slugs if s not in slugs_available()]
    if unknown:
        ap.error(f"no pattern module {', '.join(unknown)}; choose from {', '.join(slugs_available())}")
    base = Path(os.environ.get("REDISTUTOR_MUTATE_DIR", Path(tempfile.gettempdir()) / "redistutor-mutate"))
    failed = False
    results = {}
    for slug in args.slugs or slugs_available():  # one module at a time: the machine is shared
        res = run(slug, base, args.jobs, args.keep)
        if res is None:
            failed = True
            continue
        results[slug] = res
        failed |= report(slug, res) < args.min
    if len(results) > 1:
        print("\nsummary:")
        for slug, res in results.items():
            score = 100.0 * res["killed"] / res["counted"] if res["counted"] else 100.0
            survivors = len(res["survivors"])
            print(f"  {slug:28} {res['killed']:4}/{res['counted']:<4} {score:5.1f} %  ({survivors} survivors)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
