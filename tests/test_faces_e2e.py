"""`dvc exp run -S world=faces` end to end on a micro config: on real UTKFace photos where
../shared/data has them, else on generated stand-in faces."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA
from tests.e2e import MICRO, commit, hydra_value, micro_copy, sh, stages_run
from tests.face_fixtures import fake_faces_archive, real_faces_subset

pytestmark = pytest.mark.slow


# What the faces world (conf/world/faces.yaml) sets that MICRO must size down again, after it.
FACES_MICRO = {**MICRO, "faces.heldout_min_images": 1, "ingest.val_fraction": 0.25,
               **{f"{clip}.{key}": value for clip in ("clip", "scorer") for key, value in {
                   "eval_images": 20, "train.images": 200, "train.batch_size": 16}.items()},
               "judge.width": 4, "judge.steps": 10, "judge.checkpoint_every": 5, "judge.optim.warmup_steps": 2,
               "tradeoff.samples_per_prompt": 1}


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    """`dvc exp run -S world=faces` (plus the micro sizes) on 800 real UTKFace photos where
    ../shared/data has the archive, else on generated stand-in faces: the wiring is tested either
    way, on real photos where they can be had."""
    archive = tmp_path_factory.mktemp("faces") / "faces.tar"
    real = SHARED_DATA / "utkface-64px.tar"
    if real.is_file():
        real_faces_subset(real, archive, n=800)
    else:
        fake_faces_archive(archive, n=400)
    root = tmp_path_factory.mktemp("faces-repo")
    env = micro_copy(root)
    commit(root, env, "baseline")
    overrides = [f"{key}={hydra_value(value)}" for key, value in FACES_MICRO.items()]
    output = sh(["dvc", "exp", "run", "-S", "world=faces", "-S", f"world.source={archive}",
                 *(arg for override in overrides for arg in ("-S", override))], root, env)
    return root, output, env


def test_the_faces_world_runs_end_to_end_with_one_command(faces_run):
    root, output, _ = faces_run
    assert stages_run(output) == set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    parts = json.loads((root / "data/faces/parts.json").read_text())
    assert json.loads((root / "reports/world.json").read_text()) == {"world": "faces", **parts}
    assert parts["clip"] and parts["scorer"] and parts["generator"]
    assert json.loads((root / "reports/judge.json").read_text())["judge"] == "cnn"
    card = json.loads((root / "reports/faces/scorecard.json").read_text())
    assert {"align_gender", "align_age", "align_race", "align_all", "judge_acc_gender", "judge_acc_age",
            "judge_acc_race", "tokenizer_psnr", "fd_eval_clip", "fd_floor_recon", "clipscore_hessel_best_of_n",
            "align_heldout_best_of_n_all"} <= set(card)
    assert "judge CNN" in card["scored_by_alignment"]
    assert (root / "reports/faces/index.html").stat().st_size > 1000 and (root / "reports/faces/samples.png").is_file()
    shapes_card = "reports/scorecard.json"  # the shapes world's results are not overwritten
    assert (root / shapes_card).read_text() == (REPO / shapes_card).read_text()
    prompts = pd.read_csv(root / "data/prompts.csv", keep_default_na=False)
    assert len(prompts) >= 60 and prompts["prompt"].str.startswith("a photograph").all()
    assert (prompts["split"] == "heldout").sum() == 2 * FACES_MICRO.get("faces.heldout_pairs", 2)


def test_the_compare_command_writes_the_faces_table_under_the_worlds_reports(faces_run):
    root, _, env = faces_run
    sh(["t2i", "compare", "--samples", "1", "--steps", "vqdiffusion=2", "--steps", "lafite=2", "--steps",
        "clipgen=2"], root, env)
    table = json.loads((root / "reports/faces/comparison.json").read_text())
    assert table["world"] == "faces" and list(table["generators"]) == ["vqdiffusion", "lafite", "clipgen"]
    for name, row in table["generators"].items():
        assert {"align_gender", "align_age", "align_race", "floor_align_gender"} <= set(row), name
        assert (root / f"data/compare/faces/{name}/scorecard.json").is_file()
        assert (root / f"reports/faces/comparison/{name}.png").is_file()
    markdown = (root / "reports/faces/comparison.md").read_text()
    assert "(faces world)" in markdown and "| align_gender | align_age | align_race |" in markdown
    assert not (root / "reports/comparison.json").exists() or (root / "reports/comparison.json").read_text() == (
        REPO / "reports/comparison.json").read_text()  # the shapes table is not overwritten
