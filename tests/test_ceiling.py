"""The tokenizer's ceiling on held-out combinations: fresh renders of exactly those, round-tripped."""

import pandas as pd
import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.evaluate.ceiling import heldout_ceiling, renders_of
from pipeline.tokenizer.model import VQGAN
from pipeline.worlds.shapes.world import SHAPES_WORLD

torch.set_num_threads(1)
COMBOS = pd.DataFrame([("circle", "green", "small", "left"), ("circle", "green", "large", "left"),
                       ("square", "purple", "small", "top")], columns=list(SHAPES_WORLD.attributes))


def test_renders_show_only_the_wanted_combinations_and_repeat_by_seed():
    images, labels = renders_of(SHAPES_WORLD, COMBOS, 30, seed=11, resolution=32)
    assert images.shape == (30, 3, 32, 32) and images.dtype == torch.uint8 and len(labels) == 30
    assert set(labels.itertuples(index=False, name=None)) <= set(COMBOS.itertuples(index=False, name=None))
    again, _ = renders_of(SHAPES_WORLD, COMBOS, 30, seed=11, resolution=32)
    other, _ = renders_of(SHAPES_WORLD, COMBOS, 30, seed=12, resolution=32)
    assert torch.equal(images, again) and not torch.equal(images, other)


def test_a_combination_the_world_never_renders_is_named():
    odd = pd.DataFrame([("circle", "black", "small", "left")], columns=list(SHAPES_WORLD.attributes))
    with pytest.raises(UserError, match="black"):
        renders_of(SHAPES_WORLD, odd, 5, seed=0, resolution=32)


def test_the_ceiling_is_the_judge_on_reconstructions_not_on_the_renders():
    untrained = VQGAN(n_codes=16, code_dim=8, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                      resolution=32, norm="none").eval()
    result = heldout_ceiling(SHAPES_WORLD, SHAPES_WORLD.classify, untrained, COMBOS, 60, seed=3)
    assert result["real"]["all"] >= 0.95 and result["real"]["n"] == 60  # the renders carry their labels
    ceiling = result["reconstructions"]
    assert ceiling["all"] <= 0.2 and ceiling["n"] == 60  # an untrained tokenizer's codes hold no shape
    assert set(ceiling["by_size"]) == {"small", "large"} and set(ceiling["by_shape"]) == {"circle", "square"}
    assert sum(ceiling["by_size"][size]["n"] for size in ("small", "large")) == 60
