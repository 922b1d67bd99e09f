"""Shapes captions for the in-project CLIP: random rewordings to train on (synonyms, word
orders), because the evaluation prompts describe the same attributes in other words, and
fixed wordings for zero-shot scoring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.worlds.base import Attributes
from pipeline.worlds.shapes.render import POSITION_PHRASES, ShapeSpec, caption

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",)}
POSITION_WORDS = {
    "left": ("on the left", "on the left side", "at the left", "to the left"),
    "right": ("on the right", "on the right side", "at the right", "to the right"),
    "top": ("at the top", "near the top", "at the top of the image"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the image"),
    "centre": ("in the centre", "in the center", "in the middle"),
}
TRAIN_TEMPLATES = (
    "a {size} {colour} {shape} {position}",
    "a {colour} {size} {shape} {position}",
    "{position}, a {size} {colour} {shape}",
    "a {colour} {shape}, {size}, {position}",
    "there is a {size} {colour} {shape} {position}",
    "a {size} {shape} in {colour} {position}",
)
# Never trained on: zero-shot accuracy in these measures wordings the model has not seen.
NEW_TEMPLATES = (
    "a photo of a {size} {colour} {shape} {position}",
    "{position} there is a {colour} {shape} that is {size}",
)


def canonical(attributes: Attributes) -> str:
    """The caption the renderer writes for these attributes."""
    return caption(ShapeSpec(**attributes))


def reword(attributes: Attributes, rng: np.random.Generator) -> str:
    """A random training wording of the same four attributes."""
    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    return pick(TRAIN_TEMPLATES).format(
        size=pick(SIZE_WORDS[attributes["size"]]), colour=attributes["colour"],
        shape=pick(SHAPE_WORDS[attributes["shape"]]), position=pick(POSITION_WORDS[attributes["position"]]))


def describe(attributes: Attributes, template: str) -> str:
    """One fixed wording with the canonical words (for evaluation prompts)."""
    return template.format(size=attributes["size"], colour=attributes["colour"], shape=attributes["shape"],
                           position=POSITION_PHRASES[attributes["position"]])
