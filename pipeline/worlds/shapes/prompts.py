"""The shapes evaluation prompts (prompts/shapes.csv): balanced attribute combinations, half
in the canonical caption and half in other wordings, with the labels the checker scores against."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pipeline.worlds.shapes.render import ATTRIBUTES, POSITION_PHRASES, ShapeSpec, caption

# New wordings: none of them is the canonical caption the shapes CLIP was trained on.
NEW_WORDINGS = (
    "a {colour} {shape}, {size}, {where}",
    "{where_start}, a {size} {colour} {shape}",
    "a {size} {shape} coloured {colour}, {where}",
    "one {size} {colour} {shape} placed {where}",
)


def _balanced_combinations(count: int, seed: int) -> list[ShapeSpec]:
    """``count`` distinct attribute combinations, each attribute value equally often.

    Greedy picks in a seeded random order, restarted with the next order until it fits.
    """
    names = list(ATTRIBUTES)
    combos = list(itertools.product(*ATTRIBUTES.values()))
    limits = {name: -(-count // len(values)) for name, values in ATTRIBUTES.items()}
    rng = np.random.default_rng(seed)
    for _ in range(10_000):
        used = {name: dict.fromkeys(values, 0) for name, values in ATTRIBUTES.items()}
        chosen = []
        for index in rng.permutation(len(combos)):
            combo = dict(zip(names, combos[index]))
            if all(used[n][v] < limits[n] for n, v in combo.items()):
                chosen.append(ShapeSpec(**combo))
                for n, v in combo.items():
                    used[n][v] += 1
            if len(chosen) == count:
                return chosen
    raise ValueError(f"cannot balance {count} combinations")


def shapes_prompts(count: int = 60, seed: int = 0) -> pd.DataFrame:
    """Half canonical captions, half the same kind of scene in new wordings."""
    rows = []
    for i, spec in enumerate(_balanced_combinations(count, seed)):
        where = POSITION_PHRASES[spec.position]
        if i % 2 == 0:
            text, wording = caption(spec), "canonical"
        else:
            template = NEW_WORDINGS[(i // 2) % len(NEW_WORDINGS)]
            text = template.format(colour=spec.colour, shape=spec.shape, size=spec.size, where=where,
                                   where_start=where[0].upper() + where[1:])
            wording = "new"
        rows.append({"prompt": text, "shape": spec.shape, "colour": spec.colour, "size": spec.size,
                     "position": spec.position, "wording": wording})
    return pd.DataFrame(rows)
