"""The project's import graph, read with ast (nothing is imported): for the tests of dvc.yaml
and of the layout's import rules."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (None for a package without code or an outside module)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / name.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    init = base / "__init__.py"
    return init if init.is_file() and init.read_text().strip() else None


def imported_files(path: Path) -> set[Path]:
    """The project modules ``path`` imports, including ``from package import module`` and the
    packages' own ``__init__`` code, which runs first."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        parents = [".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 1)]
        found |= {file for file in map(module_file, names + parents) if file is not None}
    return found


def closure(start: Path) -> set[Path]:
    """``start`` and every project module it imports, transitively."""
    todo, seen = [start], set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported_files(path))
    return seen
