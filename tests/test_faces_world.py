"""The faces world's words: captions, rewordings, new wordings and the evaluation prompts."""

import itertools
import re

import numpy as np
import open_clip
import pandas as pd
import pytest

from pipeline.worlds.faces import captions
from pipeline.worlds.faces.labels import AGES, ATTRIBUTES, RACES
from pipeline.worlds.faces.parts import held_out_pairs
from pipeline.worlds.faces.prompts import faces_prompts
from pipeline.worlds.faces.world import FACES_WORLD
from pipeline.worlds.registry import WORLDS, world_of

CANONICAL = captions.TRAIN_TEMPLATES[0]
GENDER_WORDS = {"woman", "lady", "man", "gentleman", "girl", "boy"}
AGE_WORDS = {"baby", "infant", "girl", "boy", "child", "kid", "teenage", "teen", "teenager", "young", "adult",
             "middle-aged", "elderly", "old", "senior"}


def partial_attributes() -> list[dict[str, str]]:
    """Every non-empty subset of the attributes with every choice of their values."""
    out = []
    for k in range(1, len(ATTRIBUTES) + 1):
        for subset in itertools.combinations(ATTRIBUTES, k):
            out += [dict(zip(subset, values)) for values in itertools.product(*(ATTRIBUTES[n] for n in subset))]
    return out


def heldout() -> list[tuple[str, str]]:
    labels = pd.DataFrame([{"age": a, "race": r} for a in AGES for r in RACES])
    return held_out_pairs(labels, 3, 0, 1)


@pytest.mark.parametrize("attributes, text", [
    ({"age": "elderly", "gender": "female", "race": "white"}, "a photograph of an elderly white woman"),
    ({"age": "elderly", "gender": "female"}, "a photograph of an elderly woman"),
    ({"gender": "male"}, "a photograph of a man"),
    ({"race": "asian"}, "a photograph of an asian person"),
    ({"age": "baby", "gender": "male", "race": "indian"}, "a photograph of an indian baby boy"),
    ({"age": "child", "gender": "female"}, "a photograph of a girl"),
    ({"age": "child"}, "a photograph of a child"),
    ({"age": "teenager", "gender": "male", "race": "black"}, "a photograph of a black teenage boy"),
    ({"age": "teenager"}, "a photograph of a teenager"),
    ({"age": "young adult", "gender": "female"}, "a photograph of a young woman"),
    ({"age": "young adult"}, "a photograph of a young adult"),
    ({"age": "middle-aged", "gender": "male", "race": "other"},
     "a photograph of a middle-aged latino or middle eastern man"),
    ({"age": "elderly"}, "a photograph of an elderly person"),
])
def test_canonical_captions(attributes, text):
    assert FACES_WORLD.caption(attributes) == FACES_WORLD.describe(attributes, CANONICAL) == text


def test_every_combination_has_its_own_caption():
    combos = FACES_WORLD.attribute_combinations()
    assert len(combos) == 60 and CANONICAL == "a photograph of {x}"
    assert len({FACES_WORLD.caption(c) for c in combos}) == 60
    assert all(t.startswith("a photograph") for t in captions.NEW_TEMPLATES)


def test_partial_captions_name_exactly_their_attributes():
    every = partial_attributes()
    assert len({captions.canonical(a) for a in every}) == len(every) == 7 * 3 * 6 - 1
    rng = np.random.default_rng(0)
    for attributes in every:
        for text in [captions.canonical(attributes)] + [FACES_WORLD.reword(attributes, rng) for _ in range(5)]:
            words = set(text.split())
            assert ("race" in attributes) == any(w in text for w in captions.RACE_WORDS.values()), text
            assert ("gender" in attributes) == bool(words & GENDER_WORDS), text
            assert ("age" in attributes) == bool(words & AGE_WORDS), text
            assert "  " not in text and all((m[1] == "an") == (m[2] in "aeiou")
                                            for m in re.finditer(r"\b(an?) (\w)", text)), text


def all_training_captions() -> set[str]:
    """Every caption the CLIP's rewording can produce, for every subset of named attributes."""
    out = set()
    for attributes in partial_attributes():
        adjectives, race, nouns = captions._options(attributes)
        for adjective, noun, template in itertools.product(adjectives, nouns, captions.TRAIN_TEMPLATES):
            out.add(template.format(x=captions._phrase(adjective, race, noun)))
    return out


def test_new_wordings_cannot_come_out_of_the_training_rewording():
    trained = all_training_captions()
    rng = np.random.default_rng(0)
    assert {FACES_WORLD.reword(a, rng) for a in partial_attributes() for _ in range(20)} <= trained
    new = {FACES_WORLD.describe(a, t) for a in partial_attributes() for t in captions.NEW_TEMPLATES}
    assert not new & trained
    vocabulary = {word for text in trained for word in text.replace(",", " ").split()}
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # lowercases, splits punctuation
    trained_tokens = {tuple(t.tolist()) for t in tokenizer(sorted(trained))}
    for text in sorted(new):
        assert tuple(tokenizer([text])[0].tolist()) not in trained_tokens, text
        assert set(text.replace(",", " ").split()) <= vocabulary, f"{text!r} uses a word the CLIP never read"


def test_faces_prompt_sets_say_their_labels():
    pairs = heldout()
    prompts = faces_prompts(pairs)
    assert list(prompts.columns) == ["prompt", "age", "gender", "race", "set", "split"]
    sets = prompts.groupby(["set", "split"]).size().to_dict()
    assert sets == {("canonical", "seen"): 24, ("canonical", "heldout"): 2 * len(pairs), ("new_wording", "seen"): 12,
                    ("partial", "seen"): 24}
    held = prompts[prompts["split"] == "heldout"]
    assert set(zip(held["age"], held["gender"], held["race"])) == {
        (a, g, r) for a, r in pairs for g in ATTRIBUTES["gender"]}
    seen_all = prompts[prompts["split"] == "seen"]
    assert not set(zip(seen_all["age"], seen_all["race"])) & set(pairs)
    seen = prompts[(prompts["set"] == "canonical") & (prompts["split"] == "seen")]
    assert not seen.duplicated(list(ATTRIBUTES)).any()
    for name, values in ATTRIBUTES.items():
        counts = seen[name].value_counts()
        assert set(counts.index) == set(values) and counts.max() - counts.min() <= 1, name
    for row in prompts.to_dict("records"):
        named = {n: row[n] for n in ATTRIBUTES if row[n] != ""}
        template = captions.NEW_TEMPLATES if row["set"] == "new_wording" else (CANONICAL,)
        assert row["prompt"] in {FACES_WORLD.describe(named, t) for t in template}
        assert row["prompt"].startswith("a photograph")
    partial = prompts[prompts["set"] == "partial"]
    assert sorted((partial[list(ATTRIBUTES)] != "").sum(axis=1).value_counts().to_dict().items()) == [(1, 12), (2, 12)]


def test_faces_prompts_are_seeded():
    pairs = heldout()
    assert faces_prompts(pairs, seed=3).equals(faces_prompts(pairs, seed=3))
    assert not faces_prompts(pairs, seed=3).equals(faces_prompts(pairs, seed=4))
    assert FACES_WORLD.prompts is faces_prompts


def test_the_faces_columns_pick_the_faces_world():
    assert WORLDS == {"shapes": WORLDS["shapes"], "faces": FACES_WORLD}
    assert world_of(["file", "age", "gender", "race", "age_years"]) is FACES_WORLD
    assert world_of(["file", "age", "gender"]) is None
    assert FACES_WORLD.render is None and FACES_WORLD.classify is None and FACES_WORLD.checker_accuracy is None
