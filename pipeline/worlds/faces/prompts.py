"""The faces evaluation prompts: four sets that each test one thing, with the labels a judge
scores against.

- ``canonical`` / ``seen``: the canonical caption of combinations the generator trained on;
- ``canonical`` / ``heldout``: every combination with a held-out (age, race) pair, both genders,
  which the generator never saw together (parts.held_out_pairs);
- ``new_wording``: seen combinations in sentence structures the CLIP never trained on;
- ``partial``: one or two attributes named; the unnamed label columns are empty and unscored.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pipeline.worlds.base import balanced_combinations
from pipeline.worlds.faces.captions import NEW_TEMPLATES, TRAIN_TEMPLATES, describe
from pipeline.worlds.faces.labels import ATTRIBUTES
from pipeline.worlds.faces.parts import Pair

NAMES = list(ATTRIBUTES)


def _row(attributes: dict[str, str], text: str, prompt_set: str, split: str) -> dict[str, str]:
    return {"prompt": text, **{name: attributes.get(name, "") for name in NAMES}, "set": prompt_set, "split": split}


def faces_prompts(heldout: list[Pair], seen: int = 24, new_wording: int = 12, partial: int = 24,
                  seed: int = 0) -> pd.DataFrame:
    """The prompt sets (module docstring) as a frame: prompt, the attribute columns, set, split."""
    rng = np.random.default_rng(seed)
    excluded = set(heldout)
    combos = [dict(zip(NAMES, values)) for values in itertools.product(*ATTRIBUTES.values())]
    seen_combos = [c for c in combos if (c["age"], c["race"]) not in excluded]
    rows = [_row(c, describe(c, TRAIN_TEMPLATES[0]), "canonical", "seen")
            for c in balanced_combinations(seen_combos, seen, ATTRIBUTES, rng)]
    rows += [_row(c, describe(c, TRAIN_TEMPLATES[0]), "canonical", "heldout")
             for c in combos if (c["age"], c["race"]) in excluded]
    for i, combo in enumerate(balanced_combinations(seen_combos, new_wording, ATTRIBUTES, rng)):
        rows.append(_row(combo, describe(combo, NEW_TEMPLATES[i % len(NEW_TEMPLATES)]), "new_wording", "seen"))
    for i, combo in enumerate(balanced_combinations(seen_combos, partial, ATTRIBUTES, rng)):
        named = sorted(rng.choice(len(NAMES), size=1 + i % 2, replace=False))  # one, two in turn
        part = {NAMES[j]: combo[NAMES[j]] for j in named}
        rows.append(_row(part, describe(part, TRAIN_TEMPLATES[0]), "partial", "seen"))
    return pd.DataFrame(rows)
