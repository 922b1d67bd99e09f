"""The World interface, the registry, and the shapes world's pieces (captions, prompts, checker)."""

import itertools
from dataclasses import asdict, replace

import numpy as np
import open_clip
import pandas as pd
import pytest

from pipeline.worlds.registry import WORLDS, world_of
from pipeline.worlds.shapes import captions
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import ATTRIBUTES, caption, generate, held_out_pairs, render_example
from pipeline.worlds.shapes.world import SHAPES_WORLD


def test_the_data_columns_pick_the_world():
    assert WORLDS["shapes"] is SHAPES_WORLD  # faces: tests/test_faces_world.py
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


def test_held_out_pairs_are_seeded_and_share_no_shape_or_colour():
    pairs = held_out_pairs(3, 0)
    assert pairs == held_out_pairs(3, 0) and len(pairs) == 3
    assert len({s for s, _ in pairs}) == 3 and len({c for _, c in pairs}) == 3
    assert {tuple(held_out_pairs(3, seed)) for seed in range(20)} != {tuple(pairs)}
    with pytest.raises(ValueError, match="at most 3"):
        held_out_pairs(4, 0)


def test_the_generators_world_never_shows_a_held_out_pair(tmp_path):
    pairs = frozenset(held_out_pairs(3, 0))
    generate(tmp_path / "shapes", 300, 16, seed=0, exclude=pairs)
    labels = pd.read_csv(tmp_path / "shapes/labels.csv")
    assert not {(s, c) for s, c in zip(labels["shape"], labels["colour"])} & pairs
    assert len({(s, c) for s, c in zip(labels["shape"], labels["colour"])}) == 18 - 3
    # the CLIPs' renders hold every pair
    _, attributes = SHAPES_WORLD.render(1, 0, 600, 16)
    assert len({(a["shape"], a["colour"]) for a in attributes}) == 18


def all_training_captions() -> set[str]:
    """Every caption the CLIP's rewording can produce, for every subset of named attributes."""
    out = set()
    names = list(ATTRIBUTES)
    word_options = {"size": captions.SIZE_WORDS, "colour": {c: (c,) for c in ATTRIBUTES["colour"]},
                    "shape": captions.SHAPE_WORDS, "position": captions.POSITION_WORDS}
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            for values in itertools.product(*(ATTRIBUTES[n] for n in subset)):
                choices = [word_options[n][v] for n, v in zip(subset, values)]
                nouns = captions.UNNAMED_SHAPE if "shape" not in subset else ("",)
                for words in itertools.product(*choices):
                    for noun in nouns:
                        filled = dict(zip(subset, words))
                        if noun:
                            filled["shape"] = noun
                        for template in captions.TRAIN_TEMPLATES:
                            out.add(captions._fill(template, filled))
    return out


def test_new_wordings_cannot_come_out_of_the_training_rewording():
    trained = all_training_captions()
    rng = np.random.default_rng(0)
    sampled = {SHAPES_WORLD.reword(combo, rng) for combo in SHAPES_WORLD.attribute_combinations() for _ in range(5)}
    for combo in SHAPES_WORLD.attribute_combinations():
        named = rng.choice(list(combo), size=rng.integers(1, 4), replace=False)
        sampled.add(SHAPES_WORLD.reword({name: combo[name] for name in named}, rng))
    assert sampled <= trained  # the enumeration covers what reword does
    vocabulary = {word for text in trained for word in text.replace(",", " ").split()}
    prompts = shapes_prompts(held_out_pairs(3, 0))
    new = prompts[prompts["set"] == "new_wording"]["prompt"]
    tokenizer = open_clip.get_tokenizer("shapes-clip-tiny")  # lowercases, splits punctuation
    trained_tokens = {tuple(t.tolist()) for t in tokenizer(sorted(trained))}
    for text in new:
        assert tuple(tokenizer([text])[0].tolist()) not in trained_tokens, text
        assert set(text.replace(",", " ").split()) <= vocabulary, f"{text!r} uses a word the CLIP never read"


def test_partial_captions_name_exactly_their_attributes():
    rng = np.random.default_rng(1)
    assert SHAPES_WORLD.describe({"colour": "red", "shape": "circle"}, captions.TRAIN_TEMPLATES[0]) == "a red circle"
    assert SHAPES_WORLD.describe({"size": "large"}, captions.TRAIN_TEMPLATES[0]) == "a large shape"
    assert SHAPES_WORLD.describe({"position": "top", "colour": "blue"}, captions.TRAIN_TEMPLATES[2]) == (
        "at the top, a blue shape")
    for _ in range(200):
        text = SHAPES_WORLD.reword({"colour": "green", "size": "small"}, rng)
        assert "green" in text and ", ," not in text and not text.endswith(",") and "  " not in text
        assert not any(p in text for p in ("left", "right", "top", "bottom", "centre", "center", "middle"))
        assert not any(s in text for s in ("circle", "square", "triangle", "disc"))


def test_shapes_prompt_sets_say_their_labels():
    pairs = held_out_pairs(3, 0)
    prompts = shapes_prompts(pairs)
    sets = prompts.groupby(["set", "split"]).size().to_dict()
    assert sets == {("canonical", "seen"): 30, ("canonical", "heldout"): 30, ("new_wording", "seen"): 12,
                    ("partial", "seen"): 24}
    heldout = prompts[prompts["split"] == "heldout"]
    assert set(zip(heldout["shape"], heldout["colour"])) == set(pairs)
    seen_all = prompts[prompts["split"] == "seen"]
    assert not set(zip(seen_all["shape"], seen_all["colour"])) & set(pairs)
    seen = prompts[(prompts["set"] == "canonical") & (prompts["split"] == "seen")]
    assert not seen.duplicated(list(ATTRIBUTES)).any()
    for name, values in ATTRIBUTES.items():
        counts = seen[name].value_counts()
        assert set(counts.index) == set(values) and counts.max() - counts.min() <= 1, name
    for row in prompts.to_dict("records"):
        named = [n for n in ATTRIBUTES if row[n] != ""]
        assert row["prompt"] == SHAPES_WORLD.describe({n: row[n] for n in named}, captions.TRAIN_TEMPLATES[0]) or (
            row["set"] == "new_wording")
        assert all(row[name] in row["prompt"] for name in ("colour", "size", "shape") if name in named)
        assert ("shape" in named) != ("shape" in row["prompt"].split())
    partial = prompts[prompts["set"] == "partial"]
    assert sorted((partial[list(ATTRIBUTES)] != "").sum(axis=1).value_counts().to_dict().items()) == [
        (1, 8), (2, 8), (3, 8)]
