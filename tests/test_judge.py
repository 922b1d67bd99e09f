"""The judge CNN: its outputs, file, training, resume, and the judge stage on tiny data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.core.errors import UserError
from pipeline.core.params import JudgeParams, OptimParams
from pipeline.core.training import list_checkpoints, load_latest_checkpoint
from pipeline.judge import train as judge_train
from pipeline.judge.checker import JUDGE_FILE, RULES, load_checker
from pipeline.judge.model import Judge, load_judge, save_judge
from pipeline.judge.train import augment, train_judge
from pipeline.worlds.registry import WORLDS
from stages.cli import app

ATTRIBUTES = {"tint": ("red", "green", "blue"), "tone": ("dark", "light")}


def tiny_params(**changes) -> JudgeParams:
    params = JudgeParams(data=None, seed=0, width=8, steps=40, batch_size=16,
                         optim=OptimParams(lr=3e-3, betas=[0.9, 0.99], weight_decay=0.0, warmup_steps=5, grad_clip=1.0),
                         val_fraction=0.25, checkpoint_every=20, device="cpu", threads=1)
    return dataclasses.replace(params, **changes)


def coloured(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, pd.DataFrame]:
    """Noisy flat images whose tint and brightness are their labels: trivially learnable."""
    rng = np.random.default_rng(seed)
    tint, tone = rng.integers(3, size=n), rng.integers(2, size=n)
    base = np.full((n, 3), 40.0)
    base[np.arange(n), tint] = 200.0
    base *= np.where(tone == 0, 0.5, 1.0)[:, None]
    pixels = base[:, :, None, None] + rng.normal(0, 20, (n, 3, size, size))
    labels = pd.DataFrame({"file": [f"images/{i:04d}.png" for i in range(n)],
                           "tint": [ATTRIBUTES["tint"][i] for i in tint],
                           "tone": [ATTRIBUTES["tone"][i] for i in tone]})
    return torch.from_numpy(pixels.clip(0, 255).astype(np.uint8)), labels


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classify_answers_in_the_attributes_values_at_any_size(one_thread):
    torch.manual_seed(0)
    judge = Judge(ATTRIBUTES, width=4, resolution=32).eval()
    for size in (32, 64):
        images = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8)
        logits = judge(images)
        assert {k: tuple(v.shape) for k, v in logits.items()} == {"tint": (5, 3), "tone": (5, 2)}
        out = judge.classify(images, batch_size=2)
        assert out.keys() == {"tint", "tone", "found"} and out["found"] == [True] * 5
        assert all(v in ATTRIBUTES[name] for name in ATTRIBUTES for v in out[name]) and len(out["tint"]) == 5
    nhwc = images.permute(0, 2, 3, 1).numpy()  # the checker's other input forms read the same
    assert judge.classify(nhwc) == judge.classify(images) == judge.classify([Image.fromarray(a) for a in nhwc])


def test_save_and_load_give_the_same_predictions(tmp_path, one_thread):
    torch.manual_seed(0)
    judge = Judge(ATTRIBUTES, width=4, resolution=16).eval()
    save_judge(judge, tmp_path / "judge.pt")
    loaded = load_judge(tmp_path / "judge.pt")
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    assert loaded.attributes == ATTRIBUTES and weights_equal(judge, loaded)
    assert all(torch.equal(judge(images)[k], loaded(images)[k]) for k in ATTRIBUTES)
    assert loaded.classify(images) == judge.classify(images)
    with pytest.raises(UserError, match="dvc repro judge"):
        load_judge(tmp_path / "missing.pt")


def test_augment_flips_and_shifts_reproducibly():
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.int64).reshape(2, 3, 16, 16).remainder(256).to(torch.uint8)
    a = augment(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, images)


def test_the_judge_learns_a_trivial_task(tmp_path, one_thread):
    images, labels = coloured(160)
    model, figures = train_judge(images, labels, ATTRIBUTES, tiny_params(), tmp_path, progress=False)
    assert figures["tint"] >= 0.9 and figures["tone"] >= 0.9, figures
    assert figures["tint_chance"] < 0.6 and figures["n_train"] + figures["n_val"] == 160
    low, high = figures["tint_ci95"]
    assert low <= figures["tint"] <= high and not model.training


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, one_thread, monkeypatch):
    monkeypatch.setattr(judge_train, "LOG_EVERY", 3)  # a log window that spans a checkpoint
    images, labels = coloured(40)
    params = tiny_params(width=4, steps=6, batch_size=8, checkpoint_every=2)
    whole, figures = train_judge(images, labels, ATTRIBUTES, params, tmp_path, progress=False)
    history = load_latest_checkpoint(tmp_path)["history"]
    list_checkpoints(tmp_path)[-1].unlink()  # killed between steps 4 and 6
    torch.manual_seed(123)  # the resumed run must not depend on the state it starts in
    resumed, again = train_judge(images, labels, ATTRIBUTES, params, tmp_path, progress=False)
    assert weights_equal(whole, resumed)
    assert load_latest_checkpoint(tmp_path)["history"] == history
    assert {k: v for k, v in again.items() if k != "wall_seconds"} == \
        {k: v for k, v in figures.items() if k != "wall_seconds"}
    assert [row["step"] for row in history if "loss" in row] == [3, 6]
    assert [row["step"] for row in history if "val_tint" in row] == [2, 4, 6]


def write_folder(folder, world: str, n: int = 30) -> None:
    """A labelled folder of small PNGs with random labels of ``world``'s attributes."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"images/{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / name)
        rows.append({"file": name, **{a: rng.choice(v) for a, v in WORLDS[world].attributes.items()}})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)


def run_stage(tmp_path, params_file, overrides):
    params = params_file({"judge.device": "cpu", "judge.threads": 1, **overrides})
    return CliRunner().invoke(app, ["judge", "--params", str(params), "--out", str(tmp_path / "models/judge"),
                                    "--report", str(tmp_path / "judge.json"), "--live", str(tmp_path / "live"),
                                    "--work", str(tmp_path / "work")])


def world_of_test(name: str) -> str:
    if name not in WORLDS:
        pytest.skip(f"world {name!r} is not registered yet")
    return name


@pytest.mark.parametrize("world", ["shapes", "faces"])
def test_the_stage_trains_a_judge_on_a_labelled_folder(tmp_path, params_file, monkeypatch, one_thread, world):
    world = world_of_test(world)
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "data", world)
    result = run_stage(tmp_path, params_file, {"world.name": world, "judge.data": str(tmp_path / "data"),
                                               "judge.width": 4, "judge.steps": 3, "judge.batch_size": 8,
                                               "judge.checkpoint_every": 2, "judge.val_fraction": 0.3})
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "judge.json").read_text())
    names = list(WORLDS[world].attributes)
    assert report["judge"] == "cnn" and report["world"] == world and report["n_train"] + report["n_val"] == 30
    assert {*names, *(f"{n}_ci95" for n in names), *(f"{n}_chance" for n in names)} <= report.keys()
    assert sorted(p.name for p in (tmp_path / "models/judge").iterdir()) == [JUDGE_FILE]
    assert load_judge(tmp_path / "models/judge" / JUDGE_FILE).resolution == 64
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["step"] == 3 and {f"val_{n}" for n in names} <= summary.keys()
    checker = load_checker(WORLDS[world], tmp_path / "models/judge")
    predicted = checker(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert predicted["found"] == [True, True] and set(names) <= predicted.keys()


def test_the_stage_marks_a_rule_checker(tmp_path, params_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_stage(tmp_path, params_file, {"world.name": "shapes", "judge.data": None})
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "models/judge").iterdir()] == [RULES]
    assert json.loads((tmp_path / "judge.json").read_text()) == {"judge": "rules", "world": "shapes"}
    assert (tmp_path / "live/plots/metrics").is_dir()
    assert load_checker(WORLDS["shapes"], tmp_path / "models/judge") is WORLDS["shapes"].classify


def test_a_world_without_rules_needs_judge_data(tmp_path, params_file, monkeypatch):
    world = world_of_test("faces")
    monkeypatch.chdir(tmp_path)
    result = run_stage(tmp_path, params_file, {"world.name": world, "judge.data": None})
    assert result.exit_code == 1 and "judge.data" in result.output
    assert not (tmp_path / "models/judge").exists()


def test_load_checker_says_to_run_the_stage(tmp_path):
    with pytest.raises(UserError, match="dvc repro judge"):
        load_checker(WORLDS["shapes"], tmp_path)
