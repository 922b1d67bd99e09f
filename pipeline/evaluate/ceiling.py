"""The tokenizer's ceiling on held-out combinations.

The tokenizer never saw the held-out pairs, so the codes its encoder gives them need not draw them:
a small object of a held-out pair may come back as a shape that colour was seen in. The judge's
accuracy on round-tripped fresh renders of the held-out combinations is what a generator drawing
exactly those codes would score: the issue's ceiling. Other codes may decode better, so it is no
strict bound, but the generator learns only from the encoder's codes of seen pairs. The val split's
reconstructions (the checker's ``reconstructions``) show only seen pairs and cannot say this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.core.errors import UserError
from pipeline.evaluate.alignment import alignment_accuracy
from pipeline.judge.checker import Checker
from pipeline.tokenizer.model import VQGAN, reconstruct
from pipeline.worlds.base import World

CHUNK = 4096  # renders drawn at a time while collecting
MAX_RENDERS = 1_000_000  # give up rather than loop on combinations the world never renders


def renders_of(world: World, combos: pd.DataFrame, count: int, seed: int, resolution: int
               ) -> tuple[torch.Tensor, pd.DataFrame]:
    """The first ``count`` images of the world's own render stream ``seed`` whose attributes are
    one of ``combos``' rows (attribute columns), as uint8 (N, 3, H, W) with their labels."""
    if world.render is None:
        raise ValueError(f"world {world.name!r} renders no images")
    names = list(world.attributes)
    wanted = set(combos[names].itertuples(index=False, name=None))
    odd = next((c for c in wanted if any(v not in world.attributes[n] for n, v in zip(names, c))), None)
    if odd is not None:
        raise UserError(f"world {world.name!r} renders no {dict(zip(names, odd))}: are these its prompts?")
    images, labels = [], []
    for start in range(0, MAX_RENDERS, CHUNK):
        pixels, attributes = world.render(seed, start, CHUNK, resolution)
        keep = [i for i, a in enumerate(attributes) if tuple(a[n] for n in names) in wanted][:count - len(labels)]
        images.append(np.ascontiguousarray(pixels[keep]))
        labels += [attributes[i] for i in keep]
        if len(labels) == count:
            return torch.from_numpy(np.concatenate(images)), pd.DataFrame(labels, columns=names)
    raise UserError(f"world {world.name!r}: {len(labels)} of {count} renders of the {len(wanted)} held-out "
                    f"combinations in {MAX_RENDERS:,} images of stream {seed}; are they combinations it renders?")


def heldout_ceiling(world: World, classify: Checker, tokenizer: VQGAN, combos: pd.DataFrame, count: int,
                    seed: int) -> dict:
    """The judge on ``count`` fresh renders of ``combos`` (``real``: its own error) and on their
    reconstructions through ``tokenizer`` (``reconstructions``, the ceiling, with ``by_<attribute>``
    figures per value of each attribute)."""
    images, labels = renders_of(world, combos, count, seed, tokenizer.resolution)
    _, reconstructions = reconstruct(tokenizer, images, 256)
    names = list(world.attributes)
    predicted = classify(reconstructions)
    ceiling = alignment_accuracy(predicted, labels, names)
    for name in names:
        ceiling[f"by_{name}"] = alignment_accuracy(predicted, labels, names, by=name)[f"by_{name}"]
    return {"real": alignment_accuracy(classify(images), labels, names), "reconstructions": ceiling, "seed": seed}
