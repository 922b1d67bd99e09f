import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.worlds.shapes.checker import checker_accuracy, classify
from pipeline.worlds.shapes.render import ATTRIBUTES, ShapeSpec, render, render_example
from tests.conftest import REPO, default_raw_params

torch.set_num_threads(1)


@pytest.mark.parametrize("resolution", [32, 64])
def test_accuracy_on_held_out_renders(resolution):
    n = 2000 if resolution == 32 else 500
    result = checker_accuracy(n, seed=123, resolution=resolution)
    assert result["n"] == n and result["resolution"] == resolution
    for name in ATTRIBUTES:
        assert result[name] >= 0.98, (name, result)
    assert result["found"] == 1.0


def test_every_attribute_value_is_recognised():
    """Each of the 60 attribute combinations once, at 32 px."""
    rng = np.random.default_rng(9)
    specs = [ShapeSpec(shape, colour, size, position)
             for shape in ATTRIBUTES["shape"] for colour in ATTRIBUTES["colour"]
             for size in ATTRIBUTES["size"] for position in ATTRIBUTES["position"]]
    predicted = classify([render(spec, 32, rng) for spec in specs])
    for name in ATTRIBUTES:
        wrong = [(s, predicted[name][i]) for i, s in enumerate(specs) if getattr(s, name) != predicted[name][i]]
        assert not wrong, wrong


def test_input_layouts_agree():
    images = [render_example(4, i, 32)[1] for i in range(8)]
    nhwc = np.stack([np.asarray(im) for im in images])
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    assert classify(images) == classify(nhwc) == classify(nchw)


def test_garbage_images_get_labels_and_no_object():
    rng = np.random.default_rng(0)
    garbage = np.stack([
        np.zeros((32, 32, 3)), np.full((32, 32, 3), 255), np.full((32, 32, 3), 128),
        np.tile([200, 20, 20], (32, 32, 1)),  # one saturated colour everywhere
        rng.integers(0, 256, (32, 32, 3)),  # colour noise
        np.clip(rng.uniform(40, 220, (1, 1, 3)) + rng.normal(0, 10, (32, 32, 3)), 0, 255),
    ]).astype(np.uint8)
    predicted = classify(garbage)
    assert predicted["found"] == [False] * len(garbage)
    for name, values in ATTRIBUTES.items():
        assert len(predicted[name]) == len(garbage) and set(predicted[name]) <= set(values)


def test_odd_inputs():
    assert classify([]) == {name: [] for name in [*ATTRIBUTES, "found"]}
    grey_pil = Image.new("L", (32, 32), 90)  # converted to RGB
    assert classify([grey_pil])["found"] == [False]
    with pytest.raises(ValueError):
        classify(np.zeros((2, 32, 32)))


def test_the_reported_checker_seed_is_one_no_test_uses():
    """reports/scorecard.json's checker_acc_fresh is measured on renders no test was tuned on."""
    seed = str(default_raw_params()["evaluate"]["checker_seed"])
    for path in (REPO / "tests").glob("*.py"):
        assert seed not in path.read_text(), f"{path.name} uses the evaluation's checker seed {seed}"
    assert seed not in {str(default_raw_params()["shapes"]["seed"])} | {
        str(default_raw_params()[clip]["train"]["render_seed"]) for clip in ("clip", "scorer")}
