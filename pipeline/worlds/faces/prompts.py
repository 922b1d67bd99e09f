"""The faces evaluation prompts (pipeline/worlds/base.py, evaluation_prompts), each beginning
"a photograph": the held-out sets are every combination with a held-out (age, race) pair, both
genders (parts.held_out_pairs); partial prompts name one or two attributes."""

from __future__ import annotations

import pandas as pd

from pipeline.worlds.base import evaluation_prompts
from pipeline.worlds.faces.captions import NEW_TEMPLATES, TRAIN_TEMPLATES, describe
from pipeline.worlds.faces.labels import ATTRIBUTES
from pipeline.worlds.faces.parts import Pair


def faces_prompts(heldout: list[Pair], seen: int = 24, new_wording: int = 12, partial: int = 24,
                  seed: int = 0) -> pd.DataFrame:
    """The prompt sets as a frame: prompt, the attribute columns, set, split."""
    return evaluation_prompts(ATTRIBUTES, describe, TRAIN_TEMPLATES[0], NEW_TEMPLATES, ("age", "race"), heldout,
                              seen, new_wording, partial, seed)
