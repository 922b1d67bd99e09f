"""Text-alignment accuracy and the random-real floor, on shapes-world labels."""

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate.alignment import (alignment_accuracy, entropy_bits, named_alignment, named_real_floor,
                                       random_real_floor, wilson_interval)
from pipeline.worlds.shapes.render import ATTRIBUTES, sample_spec

NAMES = list(ATTRIBUTES)


def labels_frame(rows):
    return pd.DataFrame(rows, columns=NAMES)


def test_alignment_accuracy_on_constructed_cases():
    labels = labels_frame([("circle", "red", "small", "left"), ("square", "blue", "large", "top"),
                           ("triangle", "green", "small", "centre"), ("circle", "red", "large", "right")])
    labels["wording"] = ["canonical", "new", "canonical", "new"]
    predicted = {
        "shape": ["circle", "square", "circle", "circle"],
        "colour": ["red", "blue", "green", "red"],
        "size": ["small", "large", "small", "large"],
        "position": ["left", "top", "centre", "right"],
        "found": [True, True, True, False],  # the last matches by luck but holds no object
    }
    result = alignment_accuracy(predicted, labels, NAMES, by="wording")
    assert result["shape"] == pytest.approx(2 / 4) and result["colour"] == pytest.approx(3 / 4)
    assert result["all"] == pytest.approx(2 / 4) and result["found"] == pytest.approx(3 / 4) and result["n"] == 4
    assert result["by_wording"]["canonical"]["all"] == pytest.approx(1 / 2)
    assert result["by_wording"]["new"]["all"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError):
        alignment_accuracy({k: v[:3] for k, v in predicted.items()}, labels, NAMES)


def test_random_real_floor_exact_and_by_sampling():
    real = labels_frame([("circle", "red", "small", "left"), ("circle", "blue", "small", "left"),
                         ("square", "red", "large", "top"), ("circle", "red", "small", "left")])
    prompts = labels_frame([("circle", "red", "small", "left"), ("triangle", "red", "large", "top")])
    floor = random_real_floor(real, prompts, NAMES)
    assert floor["shape"] == pytest.approx((3 / 4 + 0) / 2)
    assert floor["colour"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert floor["all"] == pytest.approx((2 / 4 + 0) / 2) and floor["n_real"] == 4

    # A generator that returns random real images scores the floor, up to sampling error.
    rng = np.random.default_rng(0)
    real = labels_frame([tuple(vars(sample_spec(rng)).values()) for _ in range(3000)])
    prompts = labels_frame([tuple(vars(sample_spec(rng)).values()) for _ in range(60)])
    prompts = prompts.loc[prompts.index.repeat(50)]  # 50 samples per prompt
    drawn = real.iloc[rng.integers(len(real), size=len(prompts))].to_dict("list")
    empirical = alignment_accuracy(drawn, prompts, NAMES)
    floor = random_real_floor(real, prompts, NAMES)
    for name in [*NAMES, "all"]:
        assert empirical[name] == pytest.approx(floor[name], abs=0.03), name


def test_wilson_interval_matches_the_closed_form_and_stays_in_range():
    low, high = wilson_interval(81, 100)
    assert (low, high) == (pytest.approx(0.7222, abs=1e-4), pytest.approx(0.8749, abs=1e-4))
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(540, 1080)[1] - wilson_interval(540, 1080)[0] < 0.06  # the +-0.03 the sample count buys


def test_partial_prompts_score_only_what_they_name():
    labels = labels_frame([("circle", "red", "", ""), ("", "blue", "large", ""), ("square", "", "", "top"),
                           ("circle", "red", "", "")])
    predicted = {"shape": ["circle", "circle", "square", "square"], "colour": ["red", "red", "blue", "red"],
                 "size": ["small", "large", "small", "large"], "position": ["left", "top", "top", "left"],
                 "found": [True, True, True, True]}
    result = named_alignment(predicted, labels, ATTRIBUTES)
    assert result["named_all"] == pytest.approx(2 / 4)  # rows 0 and 2: everything they name is right
    assert result["colour"] == pytest.approx(2 / 3) and result["shape"] == pytest.approx(2 / 3)
    assert result["size"] == 1.0 and result["position"] == 1.0
    # size unnamed in rows 0, 2, 3: read as small, small, large -> entropy of (2/3, 1/3)
    expected = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))
    assert result["unnamed_entropy"]["size"]["bits"] == pytest.approx(expected)
    assert result["unnamed_entropy"]["size"]["max_bits"] == 1.0
    assert entropy_bits(["red"] * 5, ATTRIBUTES["colour"]) == 0.0
    assert entropy_bits(list(ATTRIBUTES["position"]), ATTRIBUTES["position"]) == pytest.approx(np.log2(5))
    predicted["found"] = [False, True, True, True]
    assert named_alignment(predicted, labels, ATTRIBUTES)["named_all"] == pytest.approx(1 / 4)


def test_named_floor_is_the_share_of_real_images_matching_what_is_named():
    real = labels_frame([("circle", "red", "small", "left"), ("circle", "blue", "large", "top"),
                         ("square", "red", "small", "top"), ("triangle", "red", "large", "left")])
    prompts = labels_frame([("circle", "", "", ""), ("", "red", "small", ""), ("circle", "red", "small", "left")])
    assert named_real_floor(real, prompts, NAMES) == pytest.approx((2 / 4 + 2 / 4 + 1 / 4) / 3)
