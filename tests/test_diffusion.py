"""Mask-and-replace diffusion checked against brute-force (K+1)x(K+1) transition matrices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.diffusion.process import (
    LOG_ZERO,
    Schedule,
    TimestepSampler,
    denoising_loss,
    diffusion_loss,
    log_posterior,
    q_sample,
    sample_categorical,
    true_log_posterior,
)
from pipeline.diffusion.transformer import Transformer, TransformerConfig

K, T = 4, 10


def log_onehot(x: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Tokens (B, N) -> log one-hot (B, N, n_classes) with LOG_ZERO off the token: a known x0."""
    return F.one_hot(x, n_classes).to(dtype).sub(1).mul(-LOG_ZERO)


def matrix(a: float, g: float, b: float, k: int = K) -> torch.Tensor:
    """Q[i, j] = q(next = j | prev = i) for a mask-and-replace step."""
    q = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    q[:k, :k] = b
    q[:k, :k] += torch.eye(k, dtype=torch.float64) * a
    q[:k, k] = g
    q[k, k] = 1.0
    return q


@pytest.fixture(scope="module")
def sched() -> Schedule:
    return Schedule(K, T)


@pytest.fixture(scope="module")
def mats(sched: Schedule) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-step Q_t and cumulative products Qbar_t = Q_1...Q_t (index 0: identity)."""
    steps = [torch.eye(K + 1, dtype=torch.float64)]
    cum = [torch.eye(K + 1, dtype=torch.float64)]
    for t in range(1, T + 1):
        steps.append(matrix(float(sched.alpha[t]), float(sched.gamma[t]), float(sched.beta[t])))
        cum.append(cum[-1] @ steps[-1])
    return steps, cum


def jump(steps: list[torch.Tensor], s: int, t: int) -> torch.Tensor:
    """Q_{s+1}...Q_t: the transition matrix of the jump s -> t."""
    out = torch.eye(K + 1, dtype=torch.float64)
    for u in range(s + 1, t + 1):
        out = out @ steps[u]
    return out


def bayes(q_step: torch.Tensor, cum_s: torch.Tensor, cum_t: torch.Tensor, x0: int, xt: int) -> torch.Tensor:
    """q(x_s = . | x_t, x0) = q(x_t | x_s) q(x_s | x0) / q(x_t | x0)."""
    return q_step[:, xt] * cum_s[x0] / cum_t[x0, xt]


def test_schedule_endpoints_and_monotone() -> None:
    s = Schedule(16)
    assert s.steps == 100
    assert s.abar[1].item() == pytest.approx(0.99999) and s.abar[-1].item() == pytest.approx(9e-6)
    assert s.gbar[1].item() == pytest.approx(9e-6) and s.gbar[-1].item() == pytest.approx(0.99999)
    assert (s.abar.diff() < 0).all() and (s.gbar.diff() > 0).all()
    assert (s.bbar >= 0).all()
    for v in (s.alpha, s.gamma):
        assert ((v >= 0) & (v <= 1)).all()
    assert (s.beta >= 0).all()
    assert torch.allclose(s.alpha + s.gamma + 16 * s.beta, torch.ones_like(s.alpha))
    assert Schedule(16, 25).abar.shape == (26,)
    with pytest.raises(ValueError):
        Schedule(16, 10, abar_start=0.9, gbar_start=0.2)
    with pytest.raises(ValueError, match="abar_range"):  # no uniform-replace share left: posteriors break
        Schedule(4, 10, abar_start=0.5, abar_end=0.25, gbar_start=0.5, gbar_end=0.75)
    for bad in ({"abar_start": 0.1, "abar_end": 0.9, "gbar_start": 0.05, "gbar_end": 0.06},  # un-corrupts
                {"abar_start": 0.5, "abar_end": 0.4, "gbar_start": 1e-4, "gbar_end": 0.5}):  # replaces w.p. < 0
        with pytest.raises(ValueError, match="valid mask-and-replace"):
            Schedule(4, 10, **bad)


def test_matrices_rows_and_cumulative_closed_form(sched: Schedule, mats) -> None:
    steps, cum = mats
    for t in range(1, T + 1):
        assert torch.allclose(steps[t].sum(1), torch.ones(K + 1, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(cum[t].sum(1), torch.ones(K + 1, dtype=torch.float64), atol=1e-12)
        closed = matrix(float(sched.abar[t]), float(sched.gbar[t]), float(sched.bbar[t]))
        assert torch.allclose(cum[t], closed, atol=1e-12)


@pytest.mark.parametrize("t", [1, 4, 7, 10])
def test_q_sample_frequencies(sched: Schedule, mats, t: int) -> None:
    n = 200_000
    x0 = torch.full((1, n), 2)
    xt = q_sample(x0, torch.tensor([t]), sched, torch.Generator().manual_seed(t))
    freq = torch.bincount(xt.flatten(), minlength=K + 1).double() / n
    p = mats[1][t][2]
    tol = 5 * torch.sqrt(p * (1 - p) / n) + 1e-5
    assert ((freq - p).abs() <= tol).all(), (freq, p)


def _all_pairs(t_values: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (x0, x_t) combination as one row per t: x0 (B, N), x_t (B, N), t (B,)."""
    x0 = torch.arange(K).repeat_interleave(K + 1)
    xt = torch.arange(K + 1).repeat(K)
    B = len(t_values)
    return x0.repeat(B, 1), xt.repeat(B, 1), torch.tensor(t_values)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_one_step_posterior_is_bayes(sched: Schedule, mats, dtype: torch.dtype, atol: float) -> None:
    steps, cum = mats
    x0, xt, t = _all_pairs(list(range(1, T + 1)))
    got = log_posterior(log_onehot(x0, K, dtype), xt, t, t - 1, sched).exp().double()
    assert torch.allclose(got.sum(-1), torch.ones(got.shape[:-1], dtype=torch.float64), atol=atol * 10)
    for b, tv in enumerate(t.tolist()):
        for n in range(x0.shape[1]):
            want = bayes(steps[tv], cum[tv - 1], cum[tv], int(x0[b, n]), int(xt[b, n]))
            assert torch.allclose(got[b, n], want, atol=atol), (tv, int(x0[b, n]), int(xt[b, n]))


def test_posterior_of_x0_distribution_is_mixture(sched: Schedule, mats) -> None:
    steps, cum = mats
    g = torch.Generator().manual_seed(0)
    ts = list(range(1, T + 1))
    p0 = torch.softmax(3 * torch.randn(len(ts), K + 1, K, generator=g, dtype=torch.float64), -1)
    xt = torch.arange(K + 1).repeat(len(ts), 1)
    got = log_posterior(p0.log(), xt, torch.tensor(ts), torch.tensor(ts) - 1, sched).exp()
    for b, tv in enumerate(ts):
        for k in range(K + 1):
            want = sum(p0[b, k, i] * bayes(steps[tv], cum[tv - 1], cum[tv], i, k) for i in range(K))
            assert torch.allclose(got[b, k], want, atol=1e-9)


@pytest.mark.parametrize("s,t", [(0, 3), (2, 7), (5, 10), (1, 10), (0, 10)])
def test_skip_step_posterior_is_multistep_bayes(sched: Schedule, mats, s: int, t: int) -> None:
    steps, cum = mats
    q_jump = jump(steps, s, t)
    assert torch.allclose(cum[s] @ q_jump, cum[t], atol=1e-12)
    x0, xt, _ = _all_pairs([t])
    got = log_posterior(log_onehot(x0, K, torch.float64), xt, torch.tensor([t]), torch.tensor([s]), sched).exp()
    for n in range(x0.shape[1]):
        want = bayes(q_jump, cum[s], cum[t], int(x0[0, n]), int(xt[0, n]))
        assert torch.allclose(got[0, n], want, atol=1e-9)


@pytest.mark.parametrize("n_codes,tokens,batch", [(512, 256, 32), (128, 64, 64), (16, 5, 3)])
def test_true_posterior_is_bitwise_the_dense_one(n_codes: int, tokens: int, batch: int) -> None:
    """The training loss's compact true posterior equals log_posterior of a one-hot x0 bit for bit on
    the default schedule (so the committed runs stay valid), for one step and skipped steps, with x_t
    masked, equal to x0 and another code."""
    s = Schedule(n_codes, 100)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        x0 = torch.randint(0, n_codes, (batch, tokens), generator=g)
        t = torch.randint(1, 101, (batch,), generator=g)
        xt = q_sample(x0, t, s, g)
        xt[:, 0], xt[:, -1] = x0[:, 0], n_codes  # at least one kept code and one [MASK] a row
        for earlier in (t - 1, (t - 5).clamp(min=0)):
            want = log_posterior(log_onehot(x0, n_codes), xt, t, earlier, s)
            assert torch.equal(true_log_posterior(x0, xt, t, earlier, s), want)


@pytest.mark.parametrize("skip", [1, 3])
def test_true_posterior_is_bayes(sched: Schedule, mats, skip: int) -> None:
    steps, cum = mats
    ts = list(range(skip, T + 1))
    x0, xt, t = _all_pairs(ts)
    got = true_log_posterior(x0, xt, t, t - skip, sched).exp().double()
    for b, tv in enumerate(ts):
        q_jump = jump(steps, tv - skip, tv)
        for n in range(x0.shape[1]):
            want = bayes(q_jump, cum[tv - skip], cum[tv], int(x0[b, n]), int(xt[b, n]))
            assert torch.allclose(got[b, n], want, atol=2e-5), (tv, int(x0[b, n]), int(xt[b, n]))


def test_posterior_normalised_at_scale() -> None:
    """K=64, T=100, float32 network-like inputs: every posterior row sums to 1."""
    s = Schedule(64, 100)
    g = torch.Generator().manual_seed(1)
    B, N = 100, 32
    t = torch.arange(1, 101)
    log_x0 = torch.log_softmax(4 * torch.randn(B, N, 64, generator=g), -1).clamp(-70, 0)
    xt = torch.randint(0, 65, (B, N), generator=g)
    for skip in (1, 4):
        out = log_posterior(log_x0, xt, t, (t - skip).clamp(min=0), s)
        assert torch.isfinite(out).all()
        assert torch.allclose(out.exp().sum(-1), torch.ones(B, N), atol=1e-4)


def test_sample_categorical_frequencies_and_empty_classes() -> None:
    p = torch.tensor([0.5, 0.0, 0.3, 1e-3, 0.199, 0.0])
    log_p = torch.log(p).clamp(min=-70.0) + 7.0  # unnormalised, with LOG_ZERO classes first and last
    n = 400_000
    x = sample_categorical(log_p.expand(n // 4, 4, -1), torch.Generator().manual_seed(0))
    assert x.shape == (n // 4, 4)
    freq = torch.bincount(x.flatten(), minlength=6).double() / n
    assert freq[1] == 0 and freq[5] == 0
    assert ((freq - p.double()).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-6).all(), freq


def test_loss_finite_and_matches_hand_terms(sched: Schedule) -> None:
    g = torch.Generator().manual_seed(0)
    B, N = 6, 5
    x0 = torch.randint(0, K, (B, N), generator=g)
    t = torch.tensor([1, 2, 3, 5, 9, 10])
    xt = q_sample(x0, t, sched, g)
    logits = torch.randn(B, N, K, generator=g, requires_grad=True)
    pt = torch.full((B,), 1.0 / T)
    out = diffusion_loss(logits, x0, xt, t, pt, sched, aux_weight=0.5)
    assert torch.isfinite(out.loss) and (out.vb >= 0).all()
    out.loss.backward()
    assert torch.isfinite(logits.grad).all()
    aux = torch.nn.functional.cross_entropy(logits.detach().transpose(1, 2), x0, reduction="none").mean(1)
    assert torch.allclose(out.aux, aux, atol=1e-5)
    want = ((out.vb + 0.5 * (2 - t / T) * aux) * T).mean()
    assert torch.allclose(out.loss.detach(), want, atol=1e-4)
    # a perfect x0 prediction has (almost) zero bound at every t
    perfect = diffusion_loss(log_onehot(x0, K) * 10, x0, xt, t, pt, sched, aux_weight=0.0)
    assert perfect.vb.max() < 1e-3


def _tiny_model() -> Transformer:
    cfg = TransformerConfig(n_codes=8, grid_h=4, grid_w=4, steps=10, clip_dim=8, depth=2, width=32, heads=2)
    return Transformer(cfg)


def _full_bound(model: Transformer, x0: torch.Tensor, cond: torch.Tensor, s: Schedule) -> float:
    """Sum over all t of L_t (averaged over the set and 4 noise draws): the whole bound."""
    g = torch.Generator().manual_seed(123)
    no_drop = torch.zeros(x0.shape[0], dtype=torch.bool)
    total = 0.0
    with torch.no_grad():
        for t in range(1, s.steps + 1):
            for _ in range(4):
                tt = torch.full((x0.shape[0],), t)
                xt = q_sample(x0, tt, s, g)
                out = diffusion_loss(model(xt, tt, cond, no_drop), x0, xt, tt, torch.ones(x0.shape[0]), s, 0.0)
                total += out.vb.mean().item() / 4
    return total


def test_loss_decreases_when_overfitting(one_thread) -> None:
    torch.manual_seed(0)
    s = Schedule(8, 10)
    model = _tiny_model()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 8, (4, 16), generator=g)
    cond = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    sampler = TimestepSampler(s.steps, min_count=5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = _full_bound(model, x0, cond, s)
    no_drop = torch.zeros(4, dtype=torch.bool)
    for _ in range(150):
        t, pt = sampler.sample(4, x0.device, g)  # one batch as pipeline/diffusion/train.py's train_step runs it
        out = denoising_loss(model, x0, q_sample(x0, t, s, g), t, pt, cond, no_drop, s, aux_weight=5e-4)
        sampler.update(t, out.vb)
        assert torch.isfinite(out.loss)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    after = _full_bound(model, x0, cond, s)
    assert sampler.ready and sampler.count.sum() == 150 * 4
    assert after < 0.5 * before, (before, after)


def test_timestep_sampler_uniform_until_filled() -> None:
    ts = TimestepSampler(5, min_count=3)
    g = torch.Generator().manual_seed(0)
    t, pt = ts.sample(20_000, torch.device("cpu"), g)
    assert t.min() == 1 and t.max() == 5
    assert torch.allclose(pt, torch.full_like(pt, 0.2))
    freq = torch.bincount(t, minlength=6)[1:].double() / t.numel()
    assert ((freq - 0.2).abs() < 0.02).all()
    for _ in range(2):
        ts.update(torch.arange(1, 6), torch.arange(1, 6).double())
    ts.update(torch.arange(1, 5), torch.arange(1, 5).double())  # t=5 has only 2 entries
    assert not ts.ready and torch.allclose(ts.probs(), torch.full((5,), 0.2, dtype=torch.float64))


def test_timestep_sampler_importance_and_state_round_trip() -> None:
    ts = TimestepSampler(5, min_count=2, decay=0.9)
    losses = torch.tensor([0.1, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    for _ in range(2):
        ts.update(torch.arange(1, 6), losses)
    assert ts.ready
    w = losses + 1e-4
    w[0] = w[1]
    assert torch.allclose(ts.probs(), w / w.sum(), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    t, pt = ts.sample(50_000, torch.device("cpu"), g)
    freq = torch.bincount(t, minlength=6)[1:].double() / t.numel()
    assert torch.allclose(freq, w / w.sum(), atol=0.01)
    assert torch.allclose(pt.double(), (w / w.sum())[t - 1], atol=1e-6)

    # EMA of the squared loss; repeated t in one batch count with their mean
    ts.update(torch.tensor([3, 3]), torch.tensor([1.0, 3.0]))
    assert ts.history[2].item() == pytest.approx(0.9 * 9.0 + 0.1 * 5.0)
    assert ts.count[2].item() == 4

    restored = TimestepSampler(5, min_count=2, decay=0.9)
    restored.load_state_dict(ts.state_dict())
    assert torch.equal(restored.probs(), ts.probs())
    a = ts.sample(64, torch.device("cpu"), torch.Generator().manual_seed(7))
    b = restored.sample(64, torch.device("cpu"), torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError):
        TimestepSampler(6).load_state_dict(ts.state_dict())
