"""The training loop every generator shares: from the resumed step to train.steps, a logged row every
log_every steps (the run's history, rank 0's DVCLive log, the progress bar) and a checkpoint every
checkpoint_every steps and at the last, with the training time carried across resumes.

What a step does and what its row and checkpoint hold are the generator's (pipeline/diffusion/train.py,
pipeline/lafite/train.py, pipeline/clipgen/train.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from pipeline.core import distributed
from pipeline.core.live import TrainingLog
from pipeline.core.params import TrainParams
from pipeline.core.training import EMA, save_checkpoint
from pipeline.generator.data import GeneratorRun

StepOutput = TypeVar("StepOutput")


@dataclass
class LoopResult:
    history: list[dict[str, Any]]  # every logged row, the resumed run's first
    seconds: float  # training time, resumed runs included
    start: int  # the step this run resumed from (0: trained from scratch)


def train_loop(params: TrainParams, work_dir: Path, state: dict[str, Any] | None,
               step: Callable[[int], StepOutput], row: Callable[[StepOutput], dict[str, float]],
               postfix: Callable[[dict[str, float]], dict[str, str]], checkpoint: Callable[[], dict[str, Any]],
               log: TrainingLog | None = None) -> LoopResult:
    """Run ``step(i)`` for i from the checkpoint ``state``'s step (or 0) to ``params.steps``.

    ``row(output)`` names a logged step's figures (called on every rank: it may gather across
    them); ``postfix(row)`` what the bar shows of them; ``checkpoint()`` the generator's own state,
    saved by rank 0 with the history and seconds the loop keeps.
    """
    start, history, seconds = (0, [], 0.0) if state is None else (state["step"], state["history"], state["seconds"])
    if log is not None:
        log.begin(start, history)
    progress = tqdm(range(start, params.steps), initial=start, total=params.steps, desc="train", unit="step",
                    disable=not distributed.is_main())
    tick, tick_step = time.perf_counter(), start
    for index in progress:
        output = step(index)
        done = index + 1
        if done % params.log_every == 0 or done == params.steps:
            now = time.perf_counter()
            seconds += now - tick
            entry = {"step": done, **row(output), "steps_per_s": (done - tick_step) / max(now - tick, 1e-9)}
            history.append(entry)
            if log is not None:
                log.row(entry)
            progress.set_postfix(postfix(entry), refresh=False)
            tick, tick_step = now, done
        if (done % params.checkpoint_every == 0 or done == params.steps) and distributed.is_main():
            save_checkpoint(work_dir, done, {**checkpoint(), "history": history, "seconds": seconds})
    return LoopResult(history, seconds, start)


def finished_run(model: torch.nn.Module, ema: EMA | None, config: object, params: TrainParams,
                 result: LoopResult) -> GeneratorRun:
    """The trained model, with its EMA weights when EMA is on, in eval mode, and the run's record."""
    if ema is not None:
        ema.copy_to(model)
    return GeneratorRun(model.eval(), config, result.history, params.steps, params.steps * params.batch_size,
                        result.seconds, result.start)
