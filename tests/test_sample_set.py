"""The sample stage's layout: held-out prompts sampled more often, seeds by a prompt's place in the
whole list, and the best of N still taken over each prompt's first N samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.diffusion.generate import DiffusionGenerator
from pipeline.diffusion.process import Schedule
from pipeline.diffusion.transformer import Transformer, TransformerConfig
from pipeline.evaluate.metrics import clip_scores
from pipeline.evaluate.scoring import best_of_n, best_of_n_pool, clip_score_summary
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.sample_set import FULL_T, runs_of, sample_prompt_set, samples_per_prompt
from pipeline.generator.sampling import prompt_seed
from pipeline.tokenizer.model import VQGAN, decode_all
from tests.conftest import make_params

CFG = TransformerConfig(n_codes=16, grid_h=4, grid_w=4, steps=10, clip_dim=12, depth=1, width=32, heads=2)
SPLITS = ["seen", "seen", "heldout", "heldout", "seen"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator() -> DiffusionGenerator:
    """Untrained but real: a tiny transformer and the decoder of a tiny VQGAN (16 px images)."""
    torch.manual_seed(0)
    vqgan = VQGAN(n_codes=16, code_dim=8, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                  resolution=16).eval()
    return DiffusionGenerator(Transformer(CFG).eval(), Schedule(CFG.n_codes, CFG.steps),
                              lambda codes: decode_all(vqgan, codes, 256), Conditioning("none", 0.0, None))


def prompts() -> tuple[pd.DataFrame, torch.Tensor]:
    frame = pd.DataFrame({"prompt": [f"prompt {i}" for i in range(len(SPLITS))], "set": "canonical",
                          "split": SPLITS})
    return frame, F.normalize(torch.randn(len(SPLITS), CFG.clip_dim, generator=torch.Generator().manual_seed(1)), dim=-1)


def sample_params(heldout: int | None, full_steps_prompts: int = 0):
    return dataclasses.replace(make_params().sample, samples_per_prompt=2, heldout_samples_per_prompt=heldout,
                               steps=3, full_steps_prompts=full_steps_prompts, seed=5)


def pixels(folder, name) -> np.ndarray:
    return np.asarray(Image.open(folder / name))


def test_counts_and_runs():
    frame, _ = prompts()
    assert samples_per_prompt(frame, sample_params(None)).tolist() == [2, 2, 2, 2, 2]
    counts = samples_per_prompt(frame, sample_params(5))
    assert counts.tolist() == [2, 2, 5, 5, 2]
    assert runs_of(counts) == [(0, 2), (2, 4), (4, 5)]
    assert samples_per_prompt(frame.drop(columns="split"), sample_params(5)).tolist() == [2] * 5  # no sets: one


def test_heldout_prompts_get_their_count_and_the_first_samples_are_what_a_whole_run_drew(tmp_path, generator):
    frame, conditions = prompts()
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir()
    parts.mkdir()
    sample_prompt_set(generator, frame, conditions, sample_params(None), whole)
    timing = sample_prompt_set(generator, frame, conditions, sample_params(5, full_steps_prompts=1), parts)

    index = pd.read_parquet(parts / "index.parquet")
    assert timing["fast"]["images"] == len(index) == 2 + 2 + 5 + 5 + 2
    assert index.groupby("prompt_index").size().tolist() == [2, 2, 5, 5, 2]
    assert index["path"].is_unique and all((parts / p).is_file() for p in index["path"])
    assert (index.groupby("prompt_index")["seed"].first() == [prompt_seed(5, i) for i in range(5)]).all()
    assert (index.groupby("prompt_index")["split"].first() == SPLITS).all()
    for name in pd.read_parquet(whole / "index.parquet")["path"]:  # every sample drawn whole, unchanged: held-out
        np.testing.assert_array_equal(pixels(whole, name), pixels(parts, name))  # prompts' first 2 too
    full = pd.read_parquet(parts / FULL_T / "index.parquet")
    assert full["prompt_index"].tolist() == [0, 0] and timing[FULL_T]["images"] == 2
    sheet = Image.open(parts / "contact_sheet.png")
    assert sheet.height == 5 * 64 and sheet.width == 300 + 2 * 64  # a row per prompt, its first 2 samples


def test_best_of_n_picks_among_each_prompts_first_n_samples():
    index = pd.DataFrame({"prompt_index": [0, 0, 1, 1, 1, 1], "sample": [0, 1, 0, 1, 2, 3]})
    cosine = np.array([0.1, 0.2, 0.3, 0.1, 0.9, 0.8])
    assert best_of_n_pool(index).tolist() == [True, True, True, True, False, False]
    assert best_of_n(index, cosine).tolist() == [False, True, True, False, False, False]
    summary = clip_score_summary(index, cosine)
    assert summary["clip_cosine_best_of_n"] == pytest.approx((0.2 + 0.3) / 2)
    assert summary["clip_cosine_mean"] == pytest.approx(cosine.mean())  # the mean keeps every sample
    assert clip_scores(pd.DataFrame({"prompt": index["prompt_index"], "sample": index["sample"],
                                     "cosine": cosine}))["clip_cosine_best_of_n"] == pytest.approx((0.2 + 0.9) / 2)
