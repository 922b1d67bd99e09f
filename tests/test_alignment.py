"""Text-alignment accuracy and the random-real floor, on shapes-world labels."""

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate.alignment import alignment_accuracy, random_real_floor
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
