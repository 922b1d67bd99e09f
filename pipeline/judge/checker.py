"""What scores generated images for a world: its rule checker, or the judge CNN trained on its
labelled photos (the judge stage writes one or the other into ``models/judge``), and how well
a judge reads labelled images. Inference code: nothing here trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from pipeline.core.errors import UserError
from pipeline.core.images import ImageBatch
from pipeline.evaluate.alignment import alignment_accuracy
from pipeline.judge.model import load_judge
from pipeline.worlds.base import World

RULES = "RULES"  # the marker file: this world is scored by its rule checker
JUDGE_FILE = "judge.pt"

Checker = Callable[[ImageBatch], dict[str, list]]


def load_checker(world: World, judge_dir: str | Path, device: torch.device | str = "cpu") -> Checker:
    """The world's rule checker when ``judge_dir`` holds RULES, else the trained judge's classify."""
    judge_dir = Path(judge_dir)
    if (judge_dir / RULES).is_file():
        if world.classify is None:
            raise UserError(f"{judge_dir}: marks the rule checker, but world {world.name!r} has none; "
                            "set judge.data and run `dvc repro judge`")
        return world.classify
    if not (judge_dir / JUDGE_FILE).is_file():
        raise UserError(f"{judge_dir}: neither {RULES} nor {JUDGE_FILE}; run `dvc repro judge`")
    judge = load_judge(judge_dir / JUDGE_FILE, device)
    if set(judge.attributes) != set(world.attributes):
        raise UserError(f"{judge_dir / JUDGE_FILE}: reads {sorted(judge.attributes)}, but world {world.name!r} has "
                        f"{sorted(world.attributes)}; rerun `dvc repro judge`")
    return judge.classify


def judge_accuracy(classify: Checker, names: Sequence[str], images: ImageBatch, labels: pd.DataFrame) -> dict:
    """How well a checker (the judge's or a world's rule checker) reads labelled images: share
    read right per attribute (``<name>``, its 95% Wilson interval ``<name>_ci95``, and
    ``<name>_balanced``, the mean recall over the values present: what matters when prompts ask
    for every value equally often) and for all at once (``all``), over ``n`` images whose
    ``labels`` hold a column per attribute in ``names``."""
    predicted = pd.DataFrame(classify(images))
    labels = labels.reset_index(drop=True)
    out = alignment_accuracy(predicted, labels, names)
    for name in names:
        right = predicted[name] == labels[name]
        out[f"{name}_balanced"] = float(right.groupby(labels[name]).mean().mean()) if len(right) else float("nan")
    return out
