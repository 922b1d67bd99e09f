"""The denoiser: shapes, both MLP variants, bidirectional attention, null embedding, condition
tokens, size, FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.diffusion.transformer import AdaLN, CrossAttention, Transformer, TransformerConfig, flops_per_step

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(mlp: str = "linear", h: int = 3, w: int = 5, cond_tokens: int = 0) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(n_codes=7, grid_h=h, grid_w=w, steps=10, clip_dim=12, depth=2, width=32,
                            heads=4, mlp=mlp, cond_tokens=cond_tokens)
    model = Transformer(cfg).eval()
    for m in model.modules():  # AdaLN and cross-attention start at zero; randomise so the conditions matter
        if isinstance(m, AdaLN):
            torch.nn.init.normal_(m.to_scale_shift.weight, std=0.2)
        if isinstance(m, CrossAttention):
            torch.nn.init.normal_(m.proj.weight, std=0.2)
    return model


def inputs(model: Transformer, B: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, cfg.n_codes + 1, (B, cfg.grid_h, cfg.grid_w), generator=g)
    t = torch.randint(1, cfg.steps + 1, (B,), generator=g)
    c = torch.nn.functional.normalize(torch.randn(B, cfg.clip_dim, generator=g), dim=-1)
    return x, t, c


@pytest.mark.parametrize("mlp", ["linear", "conv"])
def test_output_shape_and_grid_forms(mlp: str) -> None:
    model = tiny(mlp)
    x, t, c = inputs(model)
    out = model(x, t, c)
    assert out.shape == (3, 15, 7) and torch.isfinite(out).all()
    assert torch.equal(model(x.flatten(1), t, c), out)
    with pytest.raises(ValueError):
        model(x.flatten(1)[:, :-1], t, c)


@pytest.mark.parametrize("mlp", ["linear", "conv"])
def test_attention_is_bidirectional(mlp: str) -> None:
    model = tiny(mlp)
    x, t, c = inputs(model, B=1)
    x = x.flatten(1)
    base = model(x, t, c)
    for changed, watched in ((x.shape[1] - 1, 0), (0, x.shape[1] - 1)):
        y = x.clone()
        y[0, changed] = (y[0, changed] + 1) % 8
        assert not torch.allclose(model(y, t, c)[0, watched], base[0, watched])


def test_conv_mlp_is_local_without_attention() -> None:
    """Each conv MLP (two 3x3 convs) reaches 2 cells; two blocks reach 4. Attention off."""
    model = tiny("conv", h=7, w=7)
    for block in model.blocks:
        block.attn.forward = lambda x: torch.zeros_like(x)
    x, t, c = inputs(model, B=1)
    x = x.flatten(1)
    base = model(x, t, c)
    y = x.clone()
    y[0, 0] = (y[0, 0] + 1) % 8  # corner (0, 0)
    diff = (model(y, t, c) - base).abs().amax(-1).view(7, 7)
    assert diff[4, 4] > 0 and diff[5:, :].amax() == 0 and diff[:, 5:].amax() == 0


def test_conditions_and_null_embedding() -> None:
    model = tiny()
    x, t, c = inputs(model)
    drop = torch.tensor([True, False, True])
    out = model(x, t, c, drop)
    other = torch.nn.functional.normalize(torch.randn(3, 12), dim=-1)
    out2 = model(x, t, other, drop)
    assert torch.allclose(out[drop], out2[drop]) and not torch.allclose(out[~drop], out2[~drop])
    assert not torch.allclose(model(x, t + 0, c), model(x, (t % 10) + 1, c))
    model(x, t, c, torch.ones(3, dtype=torch.bool)).sum().backward()
    assert model.null.grad is not None and model.null.grad.abs().sum() > 0


def test_condition_tokens_condition_each_position_and_start_silent() -> None:
    """With the AdaLN(c) path silenced, c still reaches the grid through the cross-attention,
    differently at each position, and the null embedding takes its place there too; a fresh
    model's cross-attention adds nothing (its output projection starts at zero)."""
    model = tiny(cond_tokens=3)
    for block in model.blocks:
        torch.nn.init.zeros_(block.norm_c.to_scale_shift.weight)
    x, t, c = inputs(model)
    other = torch.nn.functional.normalize(torch.randn(3, 12), dim=-1)
    change = (model(x, t, c) - model(x, t, other)).abs().amax(-1)
    assert (change > 0).all() and not torch.allclose(change, change[:, :1].expand_as(change))
    drop = torch.tensor([True, False, True])
    assert torch.allclose(model(x, t, c, drop)[drop], model(x, t, other, drop)[drop])
    model(x, t, c).sum().backward()
    assert model.to_context.weight.grad.abs().sum() > 0

    torch.manual_seed(0)
    fresh = Transformer(model.cfg)
    silent = [block.cross(torch.randn(2, 15, 32), torch.randn(2, 3, 32)) for block in fresh.blocks]
    assert all(torch.equal(y, torch.zeros_like(y)) for y in silent)
    with pytest.raises(ValueError):
        Transformer(TransformerConfig(n_codes=7, grid_h=3, grid_w=5, steps=10, cond_tokens=-1))


def test_paper_size_is_about_515m() -> None:
    cfg = TransformerConfig(n_codes=4096, grid_h=16, grid_w=16, steps=100, clip_dim=512, depth=24,
                            width=512, heads=16, mlp="conv")
    with torch.device("meta"):
        n = Transformer(cfg).num_params()
    assert 500e6 < n < 540e6, n


@pytest.mark.parametrize("mlp, cond_tokens", [("linear", 0), ("conv", 0), ("linear", 4)])
def test_flops_estimate_matches_counter(mlp: str, cond_tokens: int) -> None:
    model = tiny(mlp, h=4, w=4, cond_tokens=cond_tokens)
    x, t, c = inputs(model, B=2)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, c)
    counted = counter.get_total_flops()
    if not any("attention" in str(op) for op in counter.get_flop_counts()["Global"]):
        cfg = model.cfg  # the CPU attention kernel has no FLOP formula: add its two matmuls
        n = cfg.grid_h * cfg.grid_w
        counted += 2 * 2 * 2 * n * (n + cfg.cond_tokens) * cfg.width * cfg.depth
    est = flops_per_step(model.cfg, batch=2)
    assert abs(est - counted) / counted < 0.05, (est, counted)


def test_product_codes_are_read_and_predicted_book_by_book() -> None:
    """With code_books = 2 (K = 9 = 3 x 3) a joint code's embedding is the sum of its books' rows
    ([MASK] row 3 in each), and its logit the sum of its books' logits, so the predicted
    distribution over joint codes is a product of per-book distributions."""
    torch.manual_seed(0)
    cfg = TransformerConfig(n_codes=9, grid_h=2, grid_w=2, steps=10, clip_dim=12, depth=1, width=32, heads=4,
                            code_books=2)
    model = Transformer(cfg).eval()
    first, second = model.tok_emb.books
    x = torch.tensor([[0, 5, 8, 9]])  # codes (0, 0), (1, 2), (2, 2) and [MASK]
    want = torch.stack([first.weight[a] + second.weight[b] for a, b in ((0, 0), (1, 2), (2, 2), (3, 3))])
    torch.testing.assert_close(model.tok_emb(x)[0], want)
    log_p = model(x, torch.tensor([4]), torch.randn(1, 12)).log_softmax(-1).view(4, 3, 3)
    per_book_a, per_book_b = log_p.logsumexp(-1), log_p.logsumexp(-2)
    torch.testing.assert_close(log_p, per_book_a[:, :, None] + per_book_b[:, None, :])
    with pytest.raises(ValueError, match="books"):
        Transformer(TransformerConfig(n_codes=8, grid_h=2, grid_w=2, steps=10, code_books=2))
