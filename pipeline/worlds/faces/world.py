"""The faces world as one World: UTKFace's labels, their captions and prompts. It renders
nothing and has no rule checker: its judge is a CNN trained on the scorer part."""

from __future__ import annotations

from pipeline.worlds.base import World
from pipeline.worlds.faces import captions
from pipeline.worlds.faces.labels import ATTRIBUTES
from pipeline.worlds.faces.prompts import faces_prompts

FACES_WORLD = World(
    name="faces",
    attributes=ATTRIBUTES,
    caption=captions.canonical,
    reword=captions.reword,
    describe=captions.describe,
    train_templates=captions.TRAIN_TEMPLATES,
    new_templates=captions.NEW_TEMPLATES,
    prompts=faces_prompts,
)
