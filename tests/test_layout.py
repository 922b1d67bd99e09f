"""The import rules of ARCHITECTURE.md, checked on the import graph (read with ast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.import_graph import closure, imported_files

TRAINING = {REPO / "pipeline" / p for p in ("core/training.py", "tokenizer/train.py", "tokenizer/losses.py",
                                            "clip/train.py", "diffusion/train.py", "judge/train.py",
                                            "clipgen/train.py", "lafite/train.py", "lafite/losses.py",
                                            "generator/data.py")}
INFERENCE = [REPO / "stages" / f"{name}.py" for name in ("sample", "tradeoff", "evaluate", "generate")]
MODELS = [REPO / "pipeline" / p for p in ("tokenizer/model.py", "diffusion/transformer.py", "diffusion/model.py",
                                          "clip/encoder.py", "judge/model.py", "clipgen/model.py",
                                          "lafite/model.py", "generator/files.py")]
FORBIDDEN_IN_MODELS = {REPO / "pipeline/core/params.py", REPO / "pipeline/core/distributed.py"}
SHARED_STAGE_MODULES = {REPO / "stages" / name for name in ("common.py", "__init__.py")}


def relative(paths: set[Path]) -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in paths)


@pytest.mark.parametrize("start", INFERENCE, ids=lambda p: p.stem)
def test_inference_never_imports_training_code(start):
    trainers = closure(start) & TRAINING
    assert not trainers, f"{start.relative_to(REPO)} reaches training code: {relative(trainers)}"


@pytest.mark.parametrize("stage", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.stem)
def test_stages_do_not_import_each_other(stage):
    if stage.name in ("cli.py", "__main__.py"):  # the app that gathers the stages
        return
    others = {p for p in imported_files(stage) if p.parent.name == "stages"} - SHARED_STAGE_MODULES
    assert not others, f"{stage.relative_to(REPO)} imports other stages: {relative(others)}; move it to pipeline/"


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.relative_to(REPO / "pipeline").as_posix())
def test_models_know_neither_params_nor_distributed(model):
    found = closure(model) & FORBIDDEN_IN_MODELS
    assert not found, f"{model.relative_to(REPO)} reaches {relative(found)}: models take plain arguments"


def test_the_rules_name_real_files():
    for path in TRAINING | set(INFERENCE) | set(MODELS) | FORBIDDEN_IN_MODELS:
        assert path.is_file(), path


@pytest.mark.parametrize("module", sorted((REPO / "pipeline/core").glob("*.py")), ids=lambda p: p.stem)
def test_core_imports_nothing_else_of_the_pipeline(module):
    outside = {p for p in closure(module) if (REPO / "pipeline/core") not in p.parents}
    assert not outside, f"{module.relative_to(REPO)} reaches {relative(outside)}; core/ is the bottom layer"
