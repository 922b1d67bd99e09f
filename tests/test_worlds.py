"""The World interface, the registry, and the shapes world's pieces (captions, prompts, checker)."""

from dataclasses import asdict, replace

import numpy as np
import pytest

from pipeline.data.prompts import load_prompts
from pipeline.worlds.registry import WORLDS, world_of
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import ATTRIBUTES, POSITION_PHRASES, caption, render_example
from pipeline.worlds.shapes.world import SHAPES_WORLD
from tests.conftest import REPO


def test_the_data_columns_pick_the_world():
    assert WORLDS == {"shapes": SHAPES_WORLD}
    assert world_of(["id", "image", "caption", "position", "size", "colour", "shape"]) is SHAPES_WORLD
    assert world_of(["id", "image", "caption", "shape", "colour", "size"]) is None
    assert world_of([]) is None


def test_a_checker_is_both_functions_or_none():
    without = replace(SHAPES_WORLD, classify=None, checker_accuracy=None)
    assert without.attribute_combinations() == SHAPES_WORLD.attribute_combinations()
    with pytest.raises(ValueError, match="both"):
        replace(SHAPES_WORLD, checker_accuracy=None)


def test_combinations_cover_every_value_once():
    combos = SHAPES_WORLD.attribute_combinations()
    assert len(combos) == np.prod([len(v) for v in ATTRIBUTES.values()]) == 180
    assert len({tuple(c.values()) for c in combos}) == len(combos) and list(combos[0]) == list(ATTRIBUTES)


def test_shapes_world_reads_its_own_renders():
    specs, images = zip(*(render_example(7, i, 32) for i in range(24)))
    predicted = SHAPES_WORLD.classify(list(images))
    assert predicted["found"] == [True] * len(specs)
    for name in SHAPES_WORLD.attributes:
        assert predicted[name] == [getattr(s, name) for s in specs], name


def test_shapes_world_captions():
    rng = np.random.default_rng(0)
    for spec in (render_example(3, i, 32)[0] for i in range(20)):
        labels = asdict(spec)
        assert SHAPES_WORLD.caption(labels) == caption(spec)
        assert SHAPES_WORLD.describe(labels, SHAPES_WORLD.train_templates[0]) == caption(spec)
        assert labels["colour"] in SHAPES_WORLD.reword(labels, rng)


def test_committed_shapes_prompts_match_the_builder():
    committed = load_prompts(REPO / "prompts/shapes.csv")
    assert committed.to_dict("records") == SHAPES_WORLD.prompts().to_dict("records")


def test_shapes_prompts_are_balanced_and_say_their_labels():
    prompts = shapes_prompts()
    assert len(prompts) == 60 and not prompts.duplicated(list(ATTRIBUTES)).any()
    for name, values in ATTRIBUTES.items():
        assert set(prompts[name].value_counts()) == {60 // len(values)}
    for row in prompts.to_dict("records"):
        text = row["prompt"].lower()
        assert all(row[name] in text for name in ("shape", "colour", "size"))
        assert POSITION_PHRASES[row["position"]] in text
    assert (prompts["wording"] == "new").sum() == 30
