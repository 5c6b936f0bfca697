"""The package's shape stays as issue 12 left it: one module knows the run folder, short functions.

Both tests read the source with :mod:`ast`, so they see code, not comments or docstrings:

- Only :mod:`sampletopo.runs` (and :mod:`sampletopo._names`, where ``SPLITS``/``TREES`` are
  defined) spells the run folder's layout: no other module builds a path from a folder name of
  the layout (``rd / "topology"``), writes a file name or pattern of it (``"config.toml"``,
  ``f"epoch={e:04d}"``, ``"*.parquet"``, a regex on ``epoch=``), or spells a split or tree list
  (``("train", "val")``). Prose naming a file for a reader (an error message, a help text) is
  not layout: a string with a space in it is left alone, as are docstrings.
- No function of the package is longer than ``MAX_LINES`` lines (its docstring not counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sampletopo"
MAX_LINES = 100
# Names of the layout: file names and patterns, and the folders of a run and an experiment.
TOKENS = ("epoch=", "manifest.json", "meta.json", "config.toml", ".parquet", "_EPOCH_RE")
FOLDERS = {"losses", "topology", "checkpoints", "samples", "landscapes", "graphs", "datasets"}
OWNERS = {"runs.py", "_names.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def layout_spelled(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for each place ``source`` spells the run-folder layout."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("help", "description"):
            prose |= {id(sub) for sub in ast.walk(node.value)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if not any(c.isspace() for c in node.value):
                found += [
                    (node.lineno, f"{t!r} in {node.value!r}") for t in TOKENS if t in node.value
                ]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in FOLDERS:
                    found.append((node.lineno, f"path built with / {side.value!r}"))
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.strip("_") in ("SPLITS", "TREES"):
                    found.append((node.lineno, f"{target.id} defined"))
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) == 2:
            values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if values in ({"train", "val"}, {"join", "split"}):
                found.append((node.lineno, f"split or tree list {sorted(values)}"))
    return found


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """``(line, name, length)`` of each function of ``source`` longer than ``limit`` lines,
    counted from the first line after its docstring to its last line."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and len(body) > 1
            ):
                first = body[1]
            length = (node.end_lineno or node.lineno) - first.lineno + 1
            if length > limit:
                out.append((node.lineno, node.name, length))
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_only_the_run_folder_module_spells_the_layout():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in _modules()
        if path.name not in OWNERS
        for line, what in layout_spelled(path.read_text())
    ]
    assert not offenders, (
        "Use sampletopo.runs (Run, Experiment, epoch_tag, SPLITS) instead:\n" + "\n".join(offenders)
    )


def test_the_checks_see_what_they_are_meant_to_see():
    """The two checks on small sources: each kind of spelling is found, prose is not."""
    spelled = layout_spelled(
        'p = rd / "topology"\n'
        'name = f"{split}-epoch={e:04d}.parquet"\n'
        'SPLITS = ("train", "val")\n'
        'for t in ("join", "split"): pass\n'
        'import re\nR = re.compile(r"^epoch=(\\d+)$")\n'
    )
    assert sorted(line for line, _ in spelled) == [1, 2, 2, 3, 3, 4, 6]
    prose = (
        '"""Tables go to losses/<split>/epoch=NNNN.parquet."""\n'
        'msg = "no losses/<split>/epoch=NNNN.parquet here"\n'
        'p.add_argument("run", help="folder holding config.toml")\n'
        'q = run.loss_file("val", 3)\n'
    )
    assert layout_spelled(prose) == []
    body = "\n".join(f"    x = {i}" for i in range(MAX_LINES + 1))
    source = f'def f():\n    """Doc."""\n{body}\n\ndef g():\n    return 1\n'
    assert long_functions(source) == [(1, "f", MAX_LINES + 1)]
    assert long_functions(source, limit=MAX_LINES + 1) == []


def test_no_function_is_longer_than_about_a_hundred_lines():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {length} lines"
        for path in _modules()
        for line, name, length in long_functions(path.read_text())
    ]
    assert not offenders, f"Split these (at most {MAX_LINES} lines each):\n" + "\n".join(offenders)
