"""The worlds the pipeline knows, and which one a data set is.

The data's own columns decide: shards (or prompts) that carry all of a world's attribute
columns are that world's, so nothing else names it. Data of no world still runs the whole
pipeline: the clip stage then needs a pretrained CLIP, and evaluate reports Frechet distance
and CLIPScore without text alignment.

A labelled data set of your own becomes a world by adding a ``World`` (pipeline/worlds/base.py)
here: its attribute columns with their values, its caption functions and templates, and a
prompt builder. Without a checker that can read the attributes off generated pixels, leave
``classify`` and ``checker_accuracy`` None: the clip stage can then train the in-project CLIP
on its captions, and evaluate skips text alignment.

The registry is not in pipeline/worlds/__init__.py, which runs on every import of a world's
module: code that only renders a world should not depend on its checker or prompts.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.worlds.base import World
from pipeline.worlds.faces.world import FACES_WORLD
from pipeline.worlds.shapes.world import SHAPES_WORLD

WORLDS: dict[str, World] = {"shapes": SHAPES_WORLD, "faces": FACES_WORLD}


def world_of(columns: Iterable[str]) -> World | None:
    """The first world whose attribute columns are all among ``columns``, else None."""
    present = set(columns)
    return next((world for world in WORLDS.values() if set(world.attributes) <= present), None)
