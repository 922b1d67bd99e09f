"""Tokenizer training, resume, evaluation and the shared training utilities, on tiny models."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pipeline.core.params import OptimParams, TokenizerParams
from pipeline.core.training import EMA, batch_indices, list_checkpoints, lr_at, save_checkpoint
from pipeline.tokenizer import metrics
from pipeline.tokenizer.metrics import evaluate_tokenizer, reconstruction_grid
from pipeline.tokenizer.model import VQGAN, decode_all, encode_all
from pipeline.tokenizer.train import train_tokenizer


def tiny_params(**changes) -> TokenizerParams:
    params = TokenizerParams(
        seed=0, n_codes=16, code_books=1, code_dim=8, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
        norm="group", recon_loss="l1", kl_weight=1e-3, usage_weight=0.0, tau_start=1.0, tau_end=0.1, tau_steps=6, steps=6,
        batch_size=4, optim=OptimParams(lr=1e-3, betas=[0.9, 0.99], weight_decay=0.01, warmup_steps=2, grad_clip=1.0),
        ema_decay=0.0, disc_weight=0.0,
        disc_start=0, perceptual_weights=None, perceptual_weight=1.0, checkpoint_every=2, encode_batch_size=8,
        device="cpu", threads=1, precision="fp32", compile=False, channels_last=False)
    return dataclasses.replace(params, **changes)


def images(n: int = 20, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- metrics ---------------------------------------------------------------------------

def test_psnr_of_identical_images_is_inf_and_of_a_known_error_exact() -> None:
    a = images(4)
    assert metrics.psnr(a, a).item() == math.inf
    b = a.clone().to(torch.int16)
    b[0, 0, 0, 0] += 1 if a[0, 0, 0, 0] < 255 else -1
    pixels = a.numel()
    assert metrics.psnr(a, b).item() == pytest.approx(10 * math.log10(255**2 * pixels))
    per_image = metrics.psnr(a, b, per_image=True)
    assert per_image.shape == (4,) and per_image[0] < math.inf and (per_image[1:] == math.inf).all()


def test_ssim_is_one_for_identical_images_and_lower_otherwise() -> None:
    a = images(3, 32).float()
    torch.testing.assert_close(metrics.ssim(a, a), torch.ones(3, dtype=torch.float64))
    noisy = (a + torch.randn(a.shape, generator=torch.Generator().manual_seed(0)) * 30).clamp(0, 255)
    assert (metrics.ssim(a, noisy) < 0.95).all()


def test_codebook_usage_perplexity_and_bits_on_known_codes() -> None:
    codes = torch.tensor([[0, 0], [1, 1]])
    assert metrics.codebook_usage(codes, 4) == 0.5
    assert metrics.code_perplexity(codes, 4) == pytest.approx(2.0)
    uniform = torch.arange(8).repeat(3)
    assert metrics.codebook_usage(uniform, 8) == 1.0
    assert metrics.code_perplexity(uniform, 8) == pytest.approx(8.0)
    assert metrics.code_perplexity(torch.zeros(10, dtype=torch.long), 8) == pytest.approx(1.0)
    assert metrics.bits_per_image(64, 512) == 576.0


# --- training utilities ----------------------------------------------------------------

def test_batch_order_is_a_pure_function_of_seed_and_step() -> None:
    first_epoch = torch.cat([batch_indices(10, 3, s, seed=5) for s in range(3)])
    assert len(first_epoch.unique()) == 9  # a permutation, the last partial batch dropped
    assert torch.equal(batch_indices(10, 3, 4, seed=5), batch_indices(10, 3, 4, seed=5))
    assert not torch.equal(batch_indices(10, 3, 0, seed=5), batch_indices(10, 3, 3, seed=5))  # new epoch
    assert not torch.equal(batch_indices(10, 3, 0, seed=5), batch_indices(10, 3, 0, seed=6))


def test_warmup_then_constant_or_cosine() -> None:
    assert lr_at(0, 1.0, 4, 100) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 100) == pytest.approx(1.0)
    assert lr_at(50, 1.0, 4, 100) == 1.0
    assert lr_at(100, 1.0, 4, 100, cosine=True) == pytest.approx(0.1)
    cosine = [lr_at(s, 1.0, 4, 100, cosine=True) for s in range(4, 101)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))


def test_ema_follows_the_weights() -> None:
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    torch.testing.assert_close(ema.state_dict()["weight"], start + 1.0)


def test_checkpoints_keep_the_newest_two(tmp_path) -> None:
    for step in (2, 10, 4, 6):
        save_checkpoint(tmp_path, step, {"x": step})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000006.pt", "step-00000010.pt"]
    assert not list(tmp_path.glob(".*tmp*"))


# --- training and resume ---------------------------------------------------------------

@pytest.mark.parametrize("changes", [{}, {"ema_decay": 0.9, "disc_weight": 0.5, "disc_start": 1},
                                     {"recon_loss": "mse", "usage_weight": 0.1}], ids=["plain", "ema+gan", "mse+usage"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, changes) -> None:
    params, data, val = tiny_params(**changes), images(20), images(4, seed=1)
    whole = train_tokenizer(params, data, tmp_path / "whole", val, log_every=1, progress=False)
    killed = train_tokenizer(params, data, tmp_path / "resumed", val, log_every=1, progress=False, stop_at=3)
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step-00000002.pt"]
    assert len(killed.history) == 3  # step 3 ran but was never saved, as in a kill
    torch.manual_seed(123)  # the resumed run must not depend on the state it starts in
    resumed = train_tokenizer(params, data, tmp_path / "resumed", val, log_every=1, progress=False)
    assert weights_equal(whole.model, resumed.model)
    assert whole.history == resumed.history and whole.val_history == resumed.val_history
    assert [row["step"] for row in whole.history] == list(range(1, 7))
    assert {"loss", "recon", "kl", "usage_deficit", "tau", "lr", "usage"} <= whole.history[0].keys()
    taus = [row["tau"] for row in whole.history]
    assert taus == sorted(taus, reverse=True)


def test_a_finished_run_reloads_and_other_settings_start_afresh(tmp_path) -> None:
    params, data = tiny_params(), images(20)
    first = train_tokenizer(params, data, tmp_path, progress=False)
    again = train_tokenizer(params, data, tmp_path, progress=False)
    assert again.start_step == params.steps  # reloaded from the final checkpoint, not trained again
    assert weights_equal(first.model, again.model) and first.history == again.history
    changed = dataclasses.replace(params, optim=dataclasses.replace(params.optim, lr=2e-3))
    fresh = train_tokenizer(changed, data, tmp_path / "fresh", progress=False)
    over_stale = train_tokenizer(changed, data, tmp_path, progress=False)
    assert weights_equal(fresh.model, over_stale.model)


def test_how_a_run_executes_does_not_discard_its_checkpoints(tmp_path) -> None:
    params, data = tiny_params(), images(20)
    whole = train_tokenizer(params, data, tmp_path / "whole", progress=False)
    train_tokenizer(params, data, tmp_path / "resumed", progress=False, stop_at=3)
    changed = dataclasses.replace(params, checkpoint_every=5, encode_batch_size=4, threads=2, precision="bf16")
    resumed = train_tokenizer(changed, data, tmp_path / "resumed", progress=False, log_every=5)
    assert resumed.start_step == 2
    assert weights_equal(whole.model, resumed.model)  # bf16 autocast applies on CUDA only


# --- inference helpers -----------------------------------------------------------------

def small_model() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(16, 8, 8, [1, 2], 1, [], 16).eval()


def test_encode_all_and_decode_all_batch_consistently() -> None:
    model, data = small_model(), images(10)
    codes = encode_all(model, data, batch_size=3)
    assert codes.shape == (10, 8, 8) and codes.dtype == torch.int16
    assert torch.equal(codes, encode_all(model, data, batch_size=10))
    decoded = decode_all(model, codes, batch_size=4)
    assert decoded.shape == data.shape and decoded.dtype == torch.uint8
    assert torch.equal(decoded, decode_all(model, codes.int(), batch_size=10))


def test_reconstruction_grid_is_originals_over_reconstructions() -> None:
    model, data = small_model(), images(4)
    grid = reconstruction_grid(model, data, pad=2)
    assert grid.mode == "RGB" and grid.size == (4 * 16 + 5 * 2, 2 * 16 + 3 * 2)
    pixels = torch.from_numpy(np.array(grid))
    assert torch.equal(pixels[2:18, 2:18].permute(2, 0, 1), data[0])
    decoded = decode_all(model, encode_all(model, data[:1], 1), 1)[0]
    assert torch.equal(pixels[20:36, 2:18].permute(2, 0, 1), decoded)


def test_evaluate_reports_sane_figures() -> None:
    model, data = small_model(), images(6)
    report = evaluate_tokenizer(model, data, batch_size=4)
    assert 0 < report["psnr"] < 60 and -1 <= report["ssim"] <= 1
    assert 0 < report["codebook_usage"] <= 1 and report["codes_used"] == round(report["codebook_usage"] * 16)
    assert 1 <= report["perplexity"] <= 16
    assert report["bits_per_image"] == 64 * 4 and report["entropy_bits_per_image"] <= 64 * 4 + 1e-9
