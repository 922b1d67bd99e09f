"""The Gumbel VQGAN: tensor shapes on every path, the quantiser, the schedule, the extras."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.tokenizer.losses import (
    PerceptualLoss,
    adaptive_gan_weight,
    discriminator_for,
    hinge_d_loss,
    hinge_g_loss,
    usage_deficit,
    vgg16_features,
)
from pipeline.tokenizer.model import VQGAN, load_vqgan, save_vqgan, to_model_range, to_uint8
from pipeline.tokenizer.train import tau_at


def tiny(resolution: int = 32, ch_mult: tuple[int, ...] = (1, 2, 2), n_codes: int = 32, code_dim: int = 8,
         attn: tuple[int, ...] = ()) -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(n_codes, code_dim, 8, list(ch_mult), 1, list(attn), resolution)


@pytest.mark.parametrize("resolution, ch_mult, grid", [
    (32, (1, 2, 2), 8),  # f=4
    (64, (1, 2, 2), 16),  # f=4
    (64, (1, 1, 2, 2), 8),  # f=8
    (32, (1, 1, 2, 2), 4),  # f=8
])
def test_every_tensor_path_has_the_expected_shape(resolution: int, ch_mult: tuple[int, ...], grid: int) -> None:
    model, b, k, d = tiny(resolution, ch_mult), 2, 32, 8
    x = torch.rand(b, 3, resolution, resolution) * 2 - 1
    assert model.factor == 2 ** (len(ch_mult) - 1) and model.grid == grid
    features = model.encoder(x)
    assert features.shape == (b, model.encoder.out_channels, grid, grid)
    logits = model.quantizer.logits(features)
    assert logits.shape == (b, k, grid, grid)
    soft = model.quantizer.soft_one_hot(logits, 0.5)
    assert soft.shape == (b, k, grid, grid)
    assert model.quantizer.mix(soft).shape == (b, d, grid, grid)
    out = model(x, tau=0.5)
    assert out.recon.shape == x.shape and out.kl.shape == () and out.codes.shape == (b, grid, grid)
    codes = model.encode(x)
    assert codes.shape == (b, grid, grid) and codes.dtype == torch.long
    assert model.decode_codes(codes).shape == x.shape


def test_attention_levels_run_and_keep_shapes() -> None:
    model = tiny(32, (1, 2, 2), attn=(16, 8))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model(x, 0.5).recon.shape == x.shape


def test_resolution_must_divide_by_the_factor() -> None:
    with pytest.raises(ValueError, match="divisible"):
        tiny(36, (1, 2, 2, 2))


def test_hard_path_is_the_one_hot_argmax() -> None:
    model = tiny()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    logits = model.quantizer.logits(model.encoder(x))
    codes = model.encode(x)
    assert torch.equal(codes, logits.argmax(1))
    one_hot = torch.nn.functional.one_hot(codes, model.n_codes).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(model.quantizer.mix(one_hot), model.quantizer.lookup(codes))


def test_soft_samples_are_distributions_that_harden_as_tau_falls() -> None:
    torch.manual_seed(0)
    quantizer = tiny().quantizer
    logits = torch.randn(4, quantizer.n_codes, 8, 8) * 3
    peaks = []
    for tau in (2.0, 0.5, 0.05, 0.005):
        soft = quantizer.soft_one_hot(logits, tau)
        assert (soft >= 0).all()
        torch.testing.assert_close(soft.sum(1), torch.ones(4, 8, 8))
        peaks.append(soft.max(1).values.mean().item())
    assert peaks == sorted(peaks) and peaks[-1] > 0.99
    # with logit gaps far above the Gumbel noise, a cold sample is the argmax one-hot
    target = torch.randint(0, quantizer.n_codes, (4, 8, 8))
    confident = torch.nn.functional.one_hot(target, quantizer.n_codes).permute(0, 3, 1, 2) * 50.0 + logits
    soft = quantizer.soft_one_hot(confident, 0.01)
    assert torch.equal(soft.argmax(1), target) and soft.max(1).values.min() > 0.99


def test_kl_to_uniform_is_zero_for_flat_and_log_k_for_one_hot() -> None:
    quantizer = tiny().quantizer
    k = quantizer.n_codes
    assert quantizer.kl_to_uniform(torch.zeros(2, k, 4, 4)).abs().item() < 1e-6
    peaked = torch.full((2, k, 4, 4), -1e4)
    peaked[:, 3] = 0
    assert quantizer.kl_to_uniform(peaked).item() == pytest.approx(math.log(k), rel=1e-5)


def test_usage_deficit_rewards_spreading_positions_over_codes() -> None:
    quantizer = tiny().quantizer
    k = quantizer.n_codes
    one_code = torch.full((2, k, 4, 4), -1e4)
    one_code[:, 3] = 0
    assert usage_deficit(quantizer.code_mean(one_code)).item() == pytest.approx(math.log(k), rel=1e-5)
    # every position sure of its code (KL to uniform is maximal) but the batch uses all K equally
    spread = torch.full((k, k, 1, 1), -1e4)
    spread[torch.arange(k), torch.arange(k)] = 0
    assert usage_deficit(quantizer.code_mean(spread)).abs().item() < 1e-5
    assert quantizer.kl_to_uniform(spread).item() == pytest.approx(math.log(k), rel=1e-5)


def test_tau_schedule_endpoints_and_monotone_decay() -> None:
    taus = [tau_at(s, 0.9, 0.05, 100) for s in range(0, 150)]
    assert taus[0] == pytest.approx(0.9) and taus[100] == pytest.approx(0.05) and taus[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    assert taus[50] == pytest.approx(math.sqrt(0.9 * 0.05))  # geometric: half-way is the geometric mean


def test_encode_is_deterministic_and_round_trips_shapes() -> None:
    model = tiny()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x = to_model_range(images)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), images)
    torch.manual_seed(1)
    first = model.encode(x)
    torch.manual_seed(2)
    assert torch.equal(first, model.encode(x))
    assert to_uint8(model.decode_codes(first)).shape == images.shape


def test_save_and_load_reproduce_the_model(tmp_path) -> None:
    model = tiny().eval()
    save_vqgan(model, tmp_path / "tok.pt")
    loaded = load_vqgan(tmp_path / "tok.pt")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(model.encode(x), loaded.encode(x))
    assert torch.equal(model.decode_codes(model.encode(x)), loaded.decode_codes(loaded.encode(x)))


@pytest.mark.parametrize("resolution", [32, 64])
def test_patch_discriminator_and_hinge_losses(resolution: int) -> None:
    torch.manual_seed(0)
    disc = discriminator_for(resolution)
    logits = disc(torch.rand(2, 3, resolution, resolution))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] >= 4
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0  # both beyond the margin
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == 1.0
    assert hinge_g_loss(torch.full((4,), 0.5)).item() == -0.5


def test_adaptive_gan_weight_is_finite_and_positive() -> None:
    model = tiny()
    disc = discriminator_for(32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon = model(x, 0.5).recon
    weight = adaptive_gan_weight((recon - x).abs().mean(), hinge_g_loss(disc(recon)), model.last_layer())
    assert weight.item() > 0 and math.isfinite(weight.item())


def test_perceptual_loss_needs_a_local_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing_vgg.pth"):
        PerceptualLoss(tmp_path / "missing_vgg.pth")


def test_perceptual_loss_loads_torchvision_keys_and_passes_gradients(tmp_path) -> None:
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # other entries of a full state_dict are ignored
    torch.save(state, tmp_path / "vgg16.pth")
    loss = PerceptualLoss(tmp_path / "vgg16.pth")
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    b = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    assert loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    value = loss(a, b)
    value.backward()
    assert value.item() > 0 and b.grad is not None and b.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_norm_none_keeps_no_group_norm_and_round_trips_through_save(tmp_path) -> None:
    model = VQGAN(32, 8, 8, [1, 2, 2], 1, [8], 32, norm="none")
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in tiny().modules())
    save_vqgan(model, tmp_path / "t.pt")
    loaded = load_vqgan(tmp_path / "t.pt")
    assert loaded.config["norm"] == "none"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(x), model.eval().encode(x))


def test_product_codes_are_each_books_argmax_and_concatenated_vectors() -> None:
    torch.manual_seed(0)
    model = VQGAN(144, 8, 8, [1, 2, 2], 1, [], 32, code_books=2)
    quantizer, x = model.quantizer, torch.rand(2, 3, 32, 32) * 2 - 1
    per_book = quantizer.proj(model.encoder(x))  # (B, 2 * 12, h, w), book after book
    codes = model.encode(x)
    assert codes.max() < 144
    assert torch.equal(codes, per_book[:, :12].argmax(1) * 12 + per_book[:, 12:].argmax(1))
    # a joint code's vector is its two books' vectors side by side, and the soft path mixes the same table
    first, second = quantizer.codebooks
    torch.testing.assert_close(quantizer.lookup(codes), torch.cat([first(codes // 12), second(codes % 12)], -1)
                               .permute(0, 3, 1, 2))
    one_hot = torch.nn.functional.one_hot(codes, 144).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(quantizer.mix(one_hot), quantizer.lookup(codes))
    # the joint softmax is the product of the books' softmaxes
    joint = quantizer.logits(model.encoder(x)).softmax(1).view(2, 12, 12, 8, 8)
    torch.testing.assert_close(joint, per_book[:, :12].softmax(1)[:, :, None] * per_book[:, 12:].softmax(1)[:, None])


def test_product_tokenizer_file_round_trips_and_old_files_have_one_book(tmp_path) -> None:
    model = VQGAN(16, 8, 8, [1, 2, 2], 1, [], 32, code_books=2)
    save_vqgan(model, tmp_path / "product.pt")
    loaded = load_vqgan(tmp_path / "product.pt")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loaded.code_books == 2 and torch.equal(loaded.encode(x), model.encode(x))
    plain = tiny()
    payload = {"config": {k: v for k, v in plain.config.items() if k != "code_books"}, "state_dict": plain.state_dict()}
    torch.save(payload, tmp_path / "old.pt")
    assert load_vqgan(tmp_path / "old.pt").code_books == 1
