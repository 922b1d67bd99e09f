"""Evaluation prompt sets: loading any prompts file, and building the shapes set.

A prompts file is a CSV with a ``prompt`` column (other columns are labels, such as the
shapes attributes), or a plain text file with one prompt per line. An optional prefix
("a photograph of ") is prepended on load, as in the FFHQ evaluation protocol.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import UserError
from pipeline.shapes import ATTRIBUTES, POSITION_PHRASES, ShapeSpec, caption

# New wordings: none of them is the canonical caption the shapes CLIP was trained on.
NEW_WORDINGS = (
    "a {colour} {shape}, {size}, {where}",
    "{where_start}, a {size} {colour} {shape}",
    "a {size} {shape} coloured {colour}, {where}",
    "one {size} {colour} {shape} placed {where}",
)


def load_prompts(path: str | Path, prefix: str = "") -> pd.DataFrame:
    """A frame with a ``prompt`` column (prefixed) and any label columns."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompts file not found")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, keep_default_na=False)
        if "prompt" not in frame.columns:
            raise UserError(f"{path}: a prompts CSV needs a 'prompt' column")
    else:
        lines = [line.strip() for line in path.read_text().splitlines()]
        frame = pd.DataFrame({"prompt": [line for line in lines if line and not line.startswith("#")]})
    if frame.empty:
        raise UserError(f"{path}: holds no prompts")
    frame["prompt"] = prefix + frame["prompt"].astype(str)
    return frame


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
