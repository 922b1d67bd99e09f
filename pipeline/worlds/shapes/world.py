"""The shapes world as one World: the renderer's labels, its captions, prompts and checker."""

from __future__ import annotations

from pipeline.worlds.base import World
from pipeline.worlds.shapes import captions
from pipeline.worlds.shapes.checker import checker_accuracy, classify
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import ATTRIBUTES, render_set

SHAPES_WORLD = World(
    name="shapes",
    attributes=ATTRIBUTES,
    caption=captions.canonical,
    reword=captions.reword,
    describe=captions.describe,
    train_templates=captions.TRAIN_TEMPLATES,
    new_templates=captions.NEW_TEMPLATES,
    prompts=shapes_prompts,
    classify=classify,
    checker_accuracy=checker_accuracy,
    render=render_set,
)
