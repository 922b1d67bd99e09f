"""The DVCLive training log: params, rows per step, summary, and resume in step with checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.core.live import TrainingLog, metric_files
from pipeline.evaluate.report import read_curve

ROWS = [{"step": s, "loss": 1 / s, "lr": 0.1 * s} for s in range(10, 101, 10)]


def logged(directory) -> dict[str, list[tuple[float, float]]]:
    return {f.stem: read_curve(f)[1][f.stem] for f in metric_files(directory)}


def test_a_resumed_log_drops_rows_after_the_checkpoint_and_has_no_gap(tmp_path):
    log = TrainingLog(tmp_path / "log", {"train": {"lr": 1e-3}})
    log.begin(0, [])
    for row in ROWS[:8]:  # logged up to step 80; the run is killed with its last checkpoint at step 50
        log.row(row)
    resumed = TrainingLog(tmp_path / "log", {"train": {"lr": 1e-3}})
    resumed.begin(50, ROWS[:5])
    for row in ROWS[5:]:
        resumed.row({**row, "loss": 2 / row["step"]})  # recomputed after the checkpoint
    resumed.end({"final_loss": 0.02, "pseudo_text": "c3-0.5"})
    curves = logged(tmp_path / "log")
    assert [s for s, _ in curves["loss"]] == list(range(10, 101, 10))  # every step once
    assert [v for _, v in curves["loss"]][4:6] == [1 / 50, 2 / 60]  # kept up to 50, recomputed after
    summary = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert summary == {"loss": 0.02, "lr": 10.0, "step": 100, "final_loss": 0.02, "pseudo_text": "c3-0.5"}


def test_rows_the_log_lacks_are_written_from_the_checkpoint(tmp_path):
    log = TrainingLog(tmp_path / "log", {})
    log.begin(0, [])
    log.row(ROWS[0])
    (tmp_path / "log" / "plots" / "metrics" / "lr.tsv").unlink()  # lost, or never written
    TrainingLog(tmp_path / "log", {}).begin(30, ROWS[:3])
    curves = logged(tmp_path / "log")
    assert [s for s, _ in curves["loss"]] == [10, 20, 30] and [s for s, _ in curves["lr"]] == [10, 20, 30]


def test_a_fresh_run_clears_the_log_and_records_its_params(tmp_path):
    old = TrainingLog(tmp_path / "log", {})
    old.begin(0, [])
    old.row(ROWS[0])
    log = TrainingLog(tmp_path / "log", {"train": {"optim": {"lr": 5e-4, "betas": [0.9, 0.96]}, "mode": "c3"}})
    log.begin(0, [])
    assert metric_files(tmp_path / "log") == [] and (tmp_path / "log" / "plots" / "metrics").is_dir()
    log.end()
    params = yaml.safe_load((tmp_path / "log" / "params.yaml").read_text())
    assert params == {"train.optim.lr": 5e-4, "train.optim.betas": [0.9, 0.96], "train.mode": "c3"}


def test_a_log_in_a_git_repo_without_commits(tmp_path, monkeypatch):
    """DVCLive 3.49 alone stops there (it reads HEAD); a fresh `git init` must still train."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    log = TrainingLog("log", {})
    log.begin(0, [])
    log.row(ROWS[0])
    log.end()
    assert json.loads((tmp_path / "log" / "metrics.json").read_text()) == {"loss": 0.1, "lr": 1.0, "step": 10}
