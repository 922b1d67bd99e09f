"""A training stage's DVCLive log: its params, one row of metrics per logged step, and a summary.

DVCLive writes ``<dir>/params.yaml``, ``<dir>/metrics.json`` (the latest values and the step:
``dvc exp show`` and ``dvc metrics`` read it, live while the stage runs) and one
``<dir>/plots/metrics/<name>.tsv`` per metric (``dvc plots show``). dvc.yaml declares those
files, so DVCLive writes no dvc.yaml and saves no experiment of its own.

A killed run resumes from its last checkpoint, which may be older than the log's last rows.
``TrainingLog.begin`` makes the log agree with the checkpoint: with DVCLive's resume it keeps
the rows up to the checkpoint's step, drops later ones (they are computed again) and writes the
checkpoint's rows the log lacks, so the resumed log has no gap and no repeat.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core.atomic import atomic_file

Row = Mapping[str, float]  # "step" plus metric values


def _loggable(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) or value is None


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as DVCLive takes them: scalars under dotted keys, lists as they are."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            flat[name] = [v if _loggable(v) else str(v) for v in value]
        else:
            flat[name] = value if _loggable(value) else str(value)
    return flat


def metric_files(directory: str | Path) -> list[Path]:
    """The per-metric TSV files of a DVCLive log, by name."""
    return sorted((Path(directory) / "plots" / "metrics").rglob("*.tsv"))


def _keep_until(path: Path, step: int) -> int:
    """Drop the rows after ``step`` from one metric file; return the last step kept (-1: none)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    column = rows[0].index("step")
    body = [r for r in rows[1:] if r and int(r[column]) <= step]
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter="\t", lineterminator=os.linesep).writerows([rows[0], *body])
    return int(body[-1][column]) if body else -1


def _live_class() -> type:
    """DVCLive's ``Live``, also in a git repo with no commit yet, where DVCLive 3.49 stops reading
    HEAD (a log needs no experiment). Imported on first use: it imports DVC (over a second)."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class CommitlessLive(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except SCMError:
                self._save_dvc_exp = False

    return CommitlessLive


class TrainingLog:
    """DVCLive log of one training stage, kept in step with its checkpoints."""

    def __init__(self, directory: str | Path, params: Mapping[str, Any]) -> None:
        self.directory, self.params = Path(directory), params
        self.live = None

    def begin(self, step: int, rows: Iterable[Row]) -> None:
        """Open the log at ``step`` (0: a fresh run, which clears it), given every row logged up
        to that step (a resumed run's checkpoint holds them)."""
        self.live = _live_class()(str(self.directory), resume=step > 0, report=None, save_dvc_exp=False, dvcyaml=None)
        self.live.log_params(_flat(self.params))
        (self.directory / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # declared in dvc.yaml, rows or not
        last = {path.stem: _keep_until(path, step) for path in metric_files(self.directory)}
        for row in rows:
            missing = {k: v for k, v in row.items() if k != "step" and last.get(k, -1) < row["step"] <= step}
            if missing:
                self.row({"step": row["step"], **missing})

    def row(self, row: Row) -> None:
        """Log one row at its ``step``; DVCLive rewrites metrics.json at once."""
        self.live.step = int(row["step"])
        for name, value in row.items():
            if name != "step":
                self.live.log_metric(name, float(value))
        self.live.make_summary()

    def end(self, summary: Mapping[str, float] | None = None) -> None:
        """Add the run's final figures to the summary (not plotted) and close the log."""
        for name, value in (summary or {}).items():
            self.live.log_metric(name, value, plot=False)
        self.live.end()
        if self.live._dvc_repo is not None:  # DVCLive keeps the repo open; dulwich then complains at exit
            self.live._dvc_repo.close()
