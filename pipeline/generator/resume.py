"""Where a generator's training picks up: the generators train at a constant learning rate after
warm-up, so their first N steps do not depend on train.steps, and a longer run resumes from a
shorter one's checkpoints instead of starting again (raising train.steps trains only the new steps)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.core import distributed
from pipeline.core.params import TrainParams
from pipeline.core.training import list_checkpoints, resume_state, run_fingerprint


def generator_resume(params: TrainParams, data: dict[str, Any], work_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """(the run's fingerprint, the checkpoint to resume or None). The fingerprint leaves out
    train.steps; checkpoints past train.steps belong to a longer run and are deleted."""
    key = run_fingerprint(dataclasses.replace(params, steps=0), data)
    state = resume_state(work_dir, key, "train")
    if state is None or state["step"] <= params.steps:
        return key, state
    if distributed.is_main():
        tqdm.write(f"train: {work_dir} holds a longer run (step {state['step']} > train.steps {params.steps}); "
                   "starting afresh", file=sys.stderr)
        for path in list_checkpoints(work_dir):
            path.unlink()
    return key, None
