"""dvc.yaml lists everything each stage runs and reads, so `dvc repro` never keeps a stale result.

Each stage's code is ``stages/<name>.py`` and every project module it imports, transitively
(read with ast, not by running it); the params sections it reads are the attributes taken
from a ``Params`` object (what ``load_params`` returns) anywhere in that code but the schema
itself (pipeline/core/params.py validates every section, and checks keys of several together,
for every stage: validating is not using); a key that names a user's file must reach the stage
as a dependency too (pipeline/core/params.py says how).
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.core.params import WEIGHTS_DIR, Params
from tests.conftest import REPO
from tests.import_graph import closure as module_closure

SECTIONS = typing.get_type_hints(Params)
SCHEMA = REPO / "pipeline/core/params.py"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def closure(stage: str) -> set[Path]:
    return module_closure(REPO / "stages" / f"{stage}.py")


def sections_read(path: Path) -> set[str]:
    """Params sections read in ``path``: ``load_params(...).x``, or ``.x`` of a name bound to
    ``load_params(...)`` or annotated ``Params``."""
    tree = ast.parse(path.read_text())

    def is_load(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_params"

    holders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and is_load(node.value):
            holders |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        if isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "Params":
            holders.add(node.arg)
    read = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SECTIONS:
            if is_load(node.value) or (isinstance(node.value, ast.Name) and node.value.id in holders):
                read.add(node.attr)
    return read


def file_deps(section: str) -> set[str]:
    """The dvc.yaml deps that the user-file keys of ``section`` call for."""
    wanted = set()
    for field in dataclasses.fields(SECTIONS[section]):
        kind = field.metadata.get("file")
        if kind == "input":
            wanted.add(f"${{{section}.{field.name}}}")
        elif kind in ("weights", "weights_or_tag", "weights_or_auto"):
            wanted.add(WEIGHTS_DIR)
    return wanted


def declared_params(stage: dict) -> set[str]:
    return {p.split(".")[0] if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_depends_on_all_its_code(name):
    code = {path.relative_to(REPO).as_posix() for path in closure(name)}
    missing = code - set(STAGES[name]["deps"])
    assert not missing, f"dvc.yaml stage {name!r} runs these files but does not list them as deps: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_declares_the_params_it_reads_and_their_files(name):
    read = set().union(*(sections_read(path) for path in closure(name) if path != SCHEMA))
    assert read, f"no params read found for {name!r}: the analysis lost track"
    missing = read - declared_params(STAGES[name])
    assert not missing, f"dvc.yaml stage {name!r} reads params sections {sorted(missing)} without declaring them"
    files = set().union(*(file_deps(section) for section in read)) - set(STAGES[name]["deps"])
    assert not files, f"dvc.yaml stage {name!r} reads user files it does not depend on: add {sorted(files)}"


def test_the_analysis_sees_what_it_must():
    """Guards the test itself: known facts of the code base, found by the analysis."""
    assert REPO / "pipeline/diffusion/sampler.py" in closure("sample")
    assert REPO / "pipeline/data/prompts.py" in closure("embed")
    assert sections_read(REPO / "stages/train.py") >= {"train", "distributed"}
    assert file_deps("clip") == {WEIGHTS_DIR} and file_deps("ingest") == {"${ingest.source}"}
