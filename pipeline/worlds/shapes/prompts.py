"""The shapes evaluation prompts (pipeline/worlds/base.py, evaluation_prompts): the held-out
sets are every combination with a held-out (shape, colour) pair (render.held_out_pairs);
partial prompts name one to three attributes."""

from __future__ import annotations

import pandas as pd

from pipeline.worlds.base import evaluation_prompts
from pipeline.worlds.shapes.captions import NEW_TEMPLATES, TRAIN_TEMPLATES, describe
from pipeline.worlds.shapes.render import ATTRIBUTES, Pair


def shapes_prompts(heldout: list[Pair], seen: int = 30, new_wording: int = 12, partial: int = 24,
                   seed: int = 0) -> pd.DataFrame:
    """The prompt sets as a frame: prompt, the attribute columns, set, split."""
    return evaluation_prompts(ATTRIBUTES, describe, TRAIN_TEMPLATES[0], NEW_TEMPLATES, ("shape", "colour"), heldout,
                              seen, new_wording, partial, seed)
