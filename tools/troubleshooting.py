"""Generate docs/troubleshooting.md: every one-sentence error the runtime can raise, with its fix.

The page is read from the code, not written by hand: for each error class in
``redistutor/exceptions.py`` (its docstring says when it happens), every ``raise`` of that class in
``redistutor/`` whose message is written where it is raised, with the file and function. Values
filled in at run time are shown as ``‹name›``. tests/test_troubleshooting.py regenerates the page and
fails when it is stale or when an error class has no entry.

    .venv/bin/python tools/troubleshooting.py          # rewrite docs/troubleshooting.md
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "troubleshooting.md"


def error_classes() -> list[type]:
    sys.path.insert(0, str(ROOT))
    from redistutor import exceptions

    classes = [c for _, c in inspect.getmembers(exceptions, inspect.isclass)
               if c.__module__ == exceptions.__name__]
    return sorted(classes, key=lambda c: (len(c.__mro__), c.__name__))


def _text(node: ast.expr, consts: dict[str, str]) -> str | None:
    """The message as a learner reads it, placeholders for run-time values; None if not literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                inner = _text(v.value, consts) if isinstance(v.value, (ast.Name, ast.Constant, ast.Attribute)) else None
                parts.append(inner if inner is not None else f"‹{ast.unparse(v.value)}›")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, consts), _text(node.right, consts)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    if isinstance(node, ast.Attribute) and node.attr in consts:  # provision.FIX_NO_SERVER
        return consts[node.attr]
    return None


def _messages(arg: ast.expr, func: ast.AST, consts: dict[str, str],
              returns: dict[str, list[ast.expr]]) -> list[str]:
    """The sentences a raise's first argument can be: a literal, a constant, a local variable
    assigned a literal in the same function, or a call to a package function that returns one."""
    text = _text(arg, consts)
    if text is not None:
        return [text]
    if isinstance(arg, ast.Name):  # msg = "..." (then msg += ...) in the same function
        values = [n.value for n in ast.walk(func) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == arg.id for t in n.targets)]
        texts = [_text(v, consts) for v in values]
        return [t for t in texts if t is not None]
    if isinstance(arg, ast.Call):
        name = getattr(arg.func, "id", None) or getattr(arg.func, "attr", None)
        texts = [_text(r, consts) for r in returns.get(name or "", [])]
        return [t for t in texts if t is not None]
    return []


def raise_sites(names: set[str], package: Path = ROOT / "redistutor") -> dict[str, list[tuple[str, str, str]]]:
    """{class name: [(message, file, function)]} for the messages raised in ``package``."""
    out: dict[str, list[tuple[str, str, str]]] = {n: [] for n in names}
    trees = {path: ast.parse(path.read_text()) for path in sorted(package.rglob("*.py"))}
    consts: dict[str, str] = {}  # module-level string constants (FIX_NO_SERVER, LAB_NEEDS_LOCAL, ...)
    returns: dict[str, list[ast.expr]] = {}  # package functions' returned expressions, by name
    for tree in trees.values():
        for n in tree.body:
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        text = _text(n.value, consts)
                        if text is not None:
                            consts[t.id] = text
            if isinstance(n, ast.FunctionDef):
                returns[n.name] = [r.value for r in ast.walk(n) if isinstance(r, ast.Return) and r.value]
    for path, tree in trees.items():
        rel = "redistutor/" + path.relative_to(package).as_posix()
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(func):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                name = getattr(node.exc.func, "id", None) or getattr(node.exc.func, "attr", None)
                if name in out and node.exc.args:
                    for message in _messages(node.exc.args[0], func, consts, returns):
                        entry = (" ".join(message.split()), rel, func.name)
                        if entry not in out[name]:
                            out[name].append(entry)
    return out


def render(package: Path = ROOT / "redistutor") -> str:
    classes = error_classes()
    sites = raise_sites({c.__name__ for c in classes}, package)
    lines = ["# Troubleshooting", "",
             "Every error the runtime raises is one sentence that says what is wrong and how to fix it; in",
             "Jupyter that sentence is all you see (a server's or a build's log tail may follow it). This page",
             "lists them all, by kind, as they are written in the code (`‹…›` is a value filled in when it",
             "happens). Generated by `tools/troubleshooting.py`; `tests/test_troubleshooting.py` keeps it",
             "complete. An exercise's ✗ is not an error: it shows what was expected and what your code did,",
             "and `ex.hint()` helps.", ""]
    for cls in classes:
        base = cls.__mro__[1].__name__
        doc = " ".join((cls.__doc__ or "").split())
        lines += [f"## {cls.__name__}", "", f"{doc} (a kind of `{base}`)", ""]
        found = sorted(sites[cls.__name__])
        if not found:
            lines += ["Raised with messages built at run time (see its subclasses' and callers' sentences).", ""]
            continue
        for message, rel, func in found:
            lines.append(f"- {message.replace('|', chr(92) + '|')}  \n  <sub>`{rel}`, `{func}`</sub>")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
