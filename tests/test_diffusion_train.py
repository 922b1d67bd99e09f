import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.core.live import metric_files
from pipeline.core.torch_files import UnsafeFileError
from pipeline.core.training import list_checkpoints, load_latest_checkpoint
from pipeline.data.shards import SHARD_PATTERN
from pipeline.data.vectors import vectors_table, write_table
from pipeline.diffusion.model import Conditioning, load_model, save_model
from pipeline.diffusion.train import train_diffusion
from pipeline.generator.data import load_training_data, with_text_mean
from pipeline.evaluate.report import read_curve
from tests.conftest import REPO, make_params

TINY = {"train.depth": 1, "train.width": 32, "train.heads": 2, "train.diffusion_steps": 10, "train.steps": 120,
        "train.batch_size": 8, "train.optim.warmup_steps": 5, "train.checkpoint_every": 10, "train.log_every": 5,
        "train.optim.lr": 2e-3, "train.t_min_count": 2, "train.device": "cpu", "train.pseudo_text": "clipvq",
        "sample.steps": 5}  # T = 10: the sampler may take at most 10 steps


def write_caches(root, n=48, n_codes=16, grid=4, dim=16, drop_embedding=False):
    rng = np.random.default_rng(0)
    ids = [f"{i:016x}" for i in range(n)]
    splits = ["val" if i % 8 == 0 else "train" for i in range(n)]
    # two kinds of image, told apart by their embedding: codes 0..3 or 8..11
    kind = np.arange(n) % 2
    codes = (rng.integers(0, 4, (n, grid * grid)) + 8 * kind[:, None]).astype(np.int16)
    centres = rng.standard_normal((2, dim))
    emb = centres[kind] + 0.05 * rng.standard_normal((n, dim))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    token_meta = {"n_codes": n_codes, "grid_h": grid, "grid_w": grid, "checkpoint": "t"}
    write_table(root / "tokens" / SHARD_PATTERN.format(0), vectors_table(ids, splits, codes, "codes", token_meta))
    keep = slice(0, n - 1) if drop_embedding else slice(0, n)
    write_table(root / "embeddings" / SHARD_PATTERN.format(0),
                vectors_table(ids[keep], splits[keep], emb[keep], "embedding", {"model": "m", "dim": dim}))
    return root


def tiny_params(**extra):
    return make_params(**{k.replace(".", "__"): v for k, v in {**TINY, **extra}.items()}).train


def test_data_join_and_missing_embedding(tmp_path):
    data = load_training_data(write_caches(tmp_path / "a") / "tokens", tmp_path / "a" / "embeddings")
    assert data.codes.shape == (42, 4, 4) and data.embeddings.shape == (42, 16) and data.n_codes == 16
    root = write_caches(tmp_path / "b", drop_embedding=True)
    with pytest.raises(UserError, match="no CLIP embedding"):
        load_training_data(root / "tokens", root / "embeddings")


def test_loss_decreases_and_model_round_trips(tmp_path):
    torch.set_num_threads(1)
    root = write_caches(tmp_path)
    data = load_training_data(root / "tokens", root / "embeddings")
    with pytest.raises(UserError, match="text mean"):
        train_diffusion(tiny_params(**{"train.pseudo_text": "c3"}), data, tmp_path / "work")
    data = with_text_mean(data, np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    result = train_diffusion(tiny_params(**{"train.steps": 200, "train.pseudo_text": "c3"}), data, tmp_path / "work")
    first = np.mean([r["vlb"] for r in result.history[:4]])
    last = np.mean([r["vlb"] for r in result.history[-4:]])
    assert last < 0.7 * first
    params = tiny_params()
    conditioning = Conditioning("c3", 0.5, data.means)
    save_model(tmp_path / "m.pt", result.model, result.config, params.abar_range, params.gbar_range, data.sources,
               conditioning)
    model, schedule, sources, loaded = load_model(tmp_path / "m.pt")
    assert loaded.mode == "c3" and loaded.scale == 0.5
    torch.testing.assert_close(loaded.means.image, data.embeddings.mean(0))
    torch.testing.assert_close(loaded.means.text, data.means.text)
    x = torch.full((2, 16), 16)
    t = torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.equal(model(x, t, data.embeddings[:2]), result.model(x, t, data.embeddings[:2]))
    assert schedule.steps == 10 and sources["tokens.n_codes"] == "16"


def test_killed_run_resumes_to_the_same_weights(tmp_path, params_file):
    root = write_caches(tmp_path / "caches")
    params = params_file(TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(name):
        return [sys.executable, "-m", "stages", "train", "--params", str(params), "--tokens", str(root / "tokens"),
                "--embeddings", str(root / "embeddings"), "--out", str(tmp_path / f"{name}.pt"),
                "--work", str(tmp_path / f"work-{name}"), "--live", str(tmp_path / f"live-{name}")]

    subprocess.run(command("clean"), check=True, capture_output=True, cwd=REPO, env=env)
    process = subprocess.Popen(command("killed"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "work-killed" / "step-00000050.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed.pt").exists()
    rerun = subprocess.run(command("killed"), check=True, capture_output=True, text=True, cwd=REPO, env=env)
    assert "resuming from step" in rerun.stderr
    clean = torch.load(tmp_path / "clean.pt")["state_dict"]
    resumed = torch.load(tmp_path / "killed.pt")["state_dict"]
    assert clean.keys() == resumed.keys()
    assert all(torch.equal(clean[k], resumed[k]) for k in clean)
    # the DVCLive log continues where the checkpoint left it: every logged step once, the same losses
    curves = {name: {f.stem: read_curve(f)[1][f.stem] for f in metric_files(tmp_path / f"live-{name}")}
              for name in ("clean", "killed")}
    assert sorted(curves["clean"]) == ["aux", "loss", "lr", "steps_per_s", "vlb"]
    assert [s for s, _ in curves["killed"]["loss"]] == list(range(5, 121, 5))
    assert all(curves["killed"][k] == curves["clean"][k] for k in ("loss", "vlb", "aux", "lr"))
    summary = json.loads((tmp_path / "live-killed" / "metrics.json").read_text())
    assert summary["step"] == 120 and summary["steps"] == 120 and summary["final_loss"] > 0


def test_changed_settings_do_not_resume_old_checkpoints(tmp_path):
    torch.set_num_threads(1)
    root = write_caches(tmp_path)
    data = load_training_data(root / "tokens", root / "embeddings")
    train_diffusion(tiny_params(**{"train.steps": 30}), data, tmp_path / "work")
    assert list((tmp_path / "work").glob("step-*.pt"))
    result = train_diffusion(tiny_params(**{"train.steps": 30, "train.optim.lr": 1e-3}), data, tmp_path / "work")
    assert result.history[0]["step"] == 5


def test_a_finished_run_reloads_and_logging_changes_resume(tmp_path):
    torch.set_num_threads(1)
    root = write_caches(tmp_path)
    data = load_training_data(root / "tokens", root / "embeddings")
    params = tiny_params(**{"train.steps": 30})
    whole = train_diffusion(params, data, tmp_path / "work")
    assert [p.name for p in list_checkpoints(tmp_path / "work")] == ["step-00000020.pt", "step-00000030.pt"]
    again = train_diffusion(params, data, tmp_path / "work")
    assert again.start_step == 30 and again.history == whole.history  # reloaded, not trained again
    assert weights_equal(whole.model, again.model)

    list_checkpoints(tmp_path / "work")[-1].unlink()  # as if killed between steps 20 and 30
    changed = tiny_params(**{"train.steps": 30, "train.log_every": 2, "train.checkpoint_every": 7,
                             "train.threads": 2, "train.precision": "fp32"})
    resumed = train_diffusion(changed, data, tmp_path / "work")
    assert resumed.start_step == 20
    assert weights_equal(whole.model, resumed.model)
    assert [row["step"] for row in resumed.history][-5:] == [22, 24, 26, 28, 30]


def test_a_model_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"config": {}, "state_dict": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match="evil.pt.*refused"):
        load_model(tmp_path / "evil.pt")
    (tmp_path / "work").mkdir()
    torch.save({"step": 1, "fingerprint": "x", "model": RunsCode(marker)}, tmp_path / "work" / "step-00000001.pt")
    with pytest.raises(UnsafeFileError, match="step-00000001.pt"):
        load_latest_checkpoint(tmp_path / "work")
    assert not marker.exists()


class RunsCode:
    """Unpickling this writes a file: what a hostile model file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def weights_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_raising_the_steps_resumes_and_lowering_them_starts_afresh(tmp_path):
    torch.set_num_threads(1)
    root = write_caches(tmp_path)
    data = load_training_data(root / "tokens", root / "embeddings")
    longer = train_diffusion(tiny_params(**{"train.steps": 30}), data, tmp_path / "whole")
    train_diffusion(tiny_params(**{"train.steps": 20}), data, tmp_path / "work")
    extended = train_diffusion(tiny_params(**{"train.steps": 30}), data, tmp_path / "work")
    assert extended.start_step == 20  # only the new steps trained
    assert weights_equal(longer.model, extended.model)
    shorter = train_diffusion(tiny_params(**{"train.steps": 10}), data, tmp_path / "work")
    assert shorter.start_step == 0 and shorter.history[-1]["step"] == 10
    assert [p.name for p in list_checkpoints(tmp_path / "work")][-1] == "step-00000010.pt"
