"""conf/ (Hydra, which `dvc exp run` composes into params.yaml) and params.yaml agree, and every
world composes into params every stage accepts."""

from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump

from pipeline.core.conf import compose
from tests.conftest import REPO


def test_params_yaml_is_what_dvc_exp_run_composes_by_default(tmp_path):
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(REPO / "conf"), None, "config", "", [])
    composed = yaml.safe_load(out.read_text())
    assert composed == yaml.safe_load((REPO / "params.yaml").read_text()), (
        "params.yaml differs from conf/: edit conf/ and rerun `dvc exp run` (or compose it) so they agree")


def test_dvc_composes_with_hydra():
    assert "[hydra]\n    enabled = true" in (REPO / ".dvc/config").read_text()


@pytest.mark.parametrize("world", sorted(p.stem for p in (REPO / "conf/world").glob("*.yaml")))
def test_every_world_composes_into_valid_params(world):
    params = compose(REPO / "conf", f"world={world}")
    assert params.world.name == world
    assert params.clip.train.world == params.scorer.train.world == world


def test_the_faces_world_keeps_its_parts_apart():
    params = compose(REPO / "conf", "world=faces")
    data = Path(params.world.data)
    assert params.ingest.source == str(data / "generator")
    assert (params.clip.train.data, params.scorer.train.data) == (str(data / "clip"), str(data / "scorer"))
    assert params.judge.data == params.scorer.train.data  # the judge scores: it learns on the scorer's part
    assert params.world.reports == "reports/faces" and params.sample.samples_per_prompt == 16
