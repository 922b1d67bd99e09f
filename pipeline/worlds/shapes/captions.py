"""Shapes captions for the in-project CLIP: random rewordings to train on (synonyms, word
orders, and partial captions that name only some attributes, as real captions do), and
fixed wordings for the evaluation prompts and zero-shot scoring.

A caption names exactly the attributes it is given: ``{"colour": "red", "shape": "circle"}``
reads "a red circle", ``{"size": "large"}`` reads "a large shape".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipeline.worlds.base import Attributes
from pipeline.worlds.shapes.render import POSITION_PHRASES, ShapeSpec, caption

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",)}
UNNAMED_SHAPE = ("shape", "object")  # the noun of a caption that does not name the shape
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
# Sentence structures the CLIP never trains on, in words it knows (tests/test_worlds.py checks
# both): zero-shot accuracy and the "new wording" prompts measure generalisation to them.
NEW_TEMPLATES = (
    "{position} is a {size} {colour} {shape}",
    "the {size} {colour} {shape} is {position}",
    "a {colour} {shape} {position}, {size}",
    "{size}, {colour}, a {shape} {position}",
)


def canonical(attributes: Attributes) -> str:
    """The caption the renderer writes for these attributes."""
    return caption(ShapeSpec(**attributes))


def _fill(template: str, words: dict[str, str]) -> str:
    """Fill a template, dropping the slots of unnamed attributes and their stray commas."""
    if "colour" not in words and "in {colour}" in template:
        template = TRAIN_TEMPLATES[0]  # "a big circle in on the left" reads as nothing
    text = template.format(**{slot: words.get(slot, "") for slot in ("size", "colour", "shape", "position")})
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # an empty slot between commas
    text = re.sub(r"\s+,", ",", text)
    return text.strip(" ,")


def reword(attributes: Attributes, rng: np.random.Generator) -> str:
    """A random training wording naming exactly the given attributes (a subset is a partial caption)."""
    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    words = {"shape": pick(SHAPE_WORDS[attributes["shape"]]) if "shape" in attributes else pick(UNNAMED_SHAPE)}
    if "size" in attributes:
        words["size"] = pick(SIZE_WORDS[attributes["size"]])
    if "colour" in attributes:
        words["colour"] = attributes["colour"]
    if "position" in attributes:
        words["position"] = pick(POSITION_WORDS[attributes["position"]])
    return _fill(pick(TRAIN_TEMPLATES), words)


def describe(attributes: Attributes, template: str) -> str:
    """One fixed wording with the canonical words, naming exactly the given attributes."""
    words = {"shape": attributes.get("shape", UNNAMED_SHAPE[0])}
    if "size" in attributes:
        words["size"] = attributes["size"]
    if "colour" in attributes:
        words["colour"] = attributes["colour"]
    if "position" in attributes:
        words["position"] = POSITION_PHRASES[attributes["position"]]
    return _fill(template, words)
