"""What a world is: a data set whose images carry attribute label columns, and what the
pipeline needs to know of it beyond its images.

The text-to-image model never reads captions; a world's words serve only to train the
in-project CLIP and to write and score the evaluation prompts, so those live here and the
trainers and metrics stay generic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image

Attributes = Mapping[str, str]  # one image's labels: attribute column -> value
Images = np.ndarray | torch.Tensor | Sequence[Image.Image]


@dataclass(frozen=True)
class World:
    name: str
    attributes: Mapping[str, tuple[str, ...]]  # label columns (in report order) -> the values each takes
    caption: Callable[[Attributes], str]  # the canonical caption the data carry
    # Captions name exactly the attributes they are given (a subset is a partial caption).
    reword: Callable[[Attributes, np.random.Generator], str]  # a random training wording (in-project CLIP)
    describe: Callable[[Attributes, str], str]  # a template filled with the canonical words
    train_templates: tuple[str, ...]
    new_templates: tuple[str, ...]  # never trained on: zero-shot accuracy in unseen wordings
    prompts: Callable[..., pd.DataFrame]  # the evaluation prompt set: a prompt column and the attribute columns
    # (seed, start, count, resolution) -> uint8 (N, 3, H, W) images and their attributes: a
    # renderable world's own stream, on which the in-project CLIPs pretrain. None: not renderable.
    render: Callable[[int, int, int, int], tuple[np.ndarray, list[dict[str, str]]]] | None = None
    # The CLIP-free checker, both or neither: labels per image plus "found" (an object was
    # seen at all), and its own accuracy on (n, seed, resolution) fresh images.
    classify: Callable[[Images], dict[str, list]] | None = None
    checker_accuracy: Callable[[int, int, int], dict[str, float | int]] | None = None

    def __post_init__(self) -> None:
        if (self.classify is None) != (self.checker_accuracy is None):
            raise ValueError(f"world {self.name!r}: a checker needs both classify and checker_accuracy")

    def attribute_combinations(self) -> list[dict[str, str]]:
        """Every combination of attribute values (the zero-shot classes), in a fixed order."""
        return [dict(zip(self.attributes, values)) for values in itertools.product(*self.attributes.values())]


def balanced_combinations(combos: Sequence[dict[str, str]], count: int, attributes: Mapping[str, tuple[str, ...]],
                          rng: np.random.Generator) -> list[dict[str, str]]:
    """``count`` distinct combinations from ``combos`` with each attribute value about equally
    often (so a prompt set favours no value): greedy picks in a seeded random order, the caps
    loosened until enough fit."""
    count = min(count, len(combos))
    for slack in range(count + 1):
        limits = {name: -(-count // len(values)) + slack for name, values in attributes.items()}
        used = {name: dict.fromkeys(values, 0) for name, values in attributes.items()}
        chosen = []
        for index in rng.permutation(len(combos)):
            combo = combos[index]
            if all(used[n][combo[n]] < limits[n] for n in combo):
                chosen.append(combo)
                for n in combo:
                    used[n][combo[n]] += 1
            if len(chosen) == count:
                return chosen
    raise AssertionError("unreachable: with no caps every combination fits")


def evaluation_prompts(attributes: Mapping[str, tuple[str, ...]], describe: Callable[[Attributes, str], str],
                       canonical: str, new_templates: Sequence[str], heldout_columns: tuple[str, str],
                       heldout: Sequence[tuple[str, str]], seen: int, new_wording: int, partial: int,
                       seed: int) -> pd.DataFrame:
    """A world's four evaluation prompt sets, each testing one thing, with the labels its judge
    scores against, as a frame: prompt, the attribute columns, set, split.

    - ``canonical`` / ``seen``: ``seen`` balanced combinations the generator trained on, in the
      ``canonical`` template;
    - ``canonical`` / ``heldout``: every combination whose ``heldout_columns`` values are a
      ``heldout`` pair, which the generator never saw together;
    - ``new_wording``: seen combinations in ``new_templates``, sentence structures the CLIP never
      trained on;
    - ``partial``: one to n-1 attributes named in turn; unnamed label columns are empty (unscored).
    """
    rng = np.random.default_rng(seed)
    names = list(attributes)
    excluded = set(heldout)

    def row(named: Attributes, text: str, prompt_set: str, split: str) -> dict[str, str]:
        return {"prompt": text, **{name: named.get(name, "") for name in names}, "set": prompt_set, "split": split}

    def held_out(combo: Attributes) -> bool:
        return tuple(combo[column] for column in heldout_columns) in excluded

    combos = [dict(zip(names, values)) for values in itertools.product(*attributes.values())]
    seen_combos = [c for c in combos if not held_out(c)]
    rows = [row(c, describe(c, canonical), "canonical", "seen")
            for c in balanced_combinations(seen_combos, seen, attributes, rng)]
    rows += [row(c, describe(c, canonical), "canonical", "heldout") for c in combos if held_out(c)]
    for i, combo in enumerate(balanced_combinations(seen_combos, new_wording, attributes, rng)):
        rows.append(row(combo, describe(combo, new_templates[i % len(new_templates)]), "new_wording", "seen"))
    for i, combo in enumerate(balanced_combinations(seen_combos, partial, attributes, rng)):
        named = sorted(rng.choice(len(names), size=1 + i % (len(names) - 1), replace=False))
        part = {names[j]: combo[names[j]] for j in named}
        rows.append(row(part, describe(part, canonical), "partial", "seen"))
    return pd.DataFrame(rows)
