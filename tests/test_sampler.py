"""Reverse diffusion: seeds, guidance limits, truncation mass, purity order, step spacing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.diffusion.process import Schedule
from pipeline.diffusion.sampler import guided, purity_step, sample, timesteps, truncate
from pipeline.diffusion.transformer import AdaLN, Transformer, TransformerConfig

CFG = TransformerConfig(n_codes=7, grid_h=3, grid_w=4, steps=10, clip_dim=12, depth=2, width=32, heads=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(CFG).eval()
    for mod in m.modules():  # AdaLN starts at zero; randomise so t and c change the output
        if isinstance(mod, AdaLN):
            nn.init.normal_(mod.embed.weight, std=1.0)
            nn.init.normal_(mod.to_scale_shift.weight, std=0.3)
    nn.init.normal_(m.head.weight, std=0.5)
    return m


@pytest.fixture(scope="module")
def sched() -> Schedule:
    return Schedule(CFG.n_codes, CFG.steps)


def conds(n: int = 4) -> torch.Tensor:
    return F.normalize(torch.randn(n, CFG.clip_dim, generator=torch.Generator().manual_seed(9)), dim=-1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Fixed(nn.Module):
    """A stand-in denoiser whose x0 prediction is a fixed (N, K) table of logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.cfg = CFG
        self.logits = nn.Parameter(logits)

    def forward(self, x_t, t, cond, drop):
        return self.logits.expand(x_t.shape[0], -1, -1)


def test_timesteps() -> None:
    assert timesteps(10, 10) == list(range(10, -1, -1))
    assert timesteps(100, 10) == list(range(100, -1, -10))
    ts = timesteps(100, 3)
    assert ts[0] == 100 and ts[-1] == 0 and len(ts) == 4 and ts == sorted(ts, reverse=True)
    for bad in (0, 11):
        with pytest.raises(ValueError):
            timesteps(10, bad)


@pytest.mark.parametrize("kw", [{}, {"steps": 4}, {"purity": True}, {"guidance": 3.0, "truncation": 0.8}])
def test_reproducible_by_seed(model, sched, kw) -> None:
    a = sample(model, sched, conds(), generator=gen(0), **kw)
    b = sample(model, sched, conds(), generator=gen(0), **kw)
    c = sample(model, sched, conds(), generator=gen(1), **kw)
    assert a.shape == (4, 3, 4) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() < CFG.n_codes  # no [MASK] left
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_limits(model, sched) -> None:
    c = conds()
    plain = sample(model, sched, c, generator=gen(0))
    uncond = sample(model, sched, None, n=4, generator=gen(0))
    assert not torch.equal(plain, uncond)
    assert torch.equal(sample(model, sched, c, guidance=1.0, generator=gen(0)), plain)
    assert torch.equal(sample(model, sched, c, guidance=0.0, generator=gen(0)), uncond)
    # the batched guided path (both passes, combined) agrees at scales next to 1 and 0
    assert torch.equal(sample(model, sched, c, guidance=1.0 + 1e-6, generator=gen(0)), plain)
    assert torch.equal(sample(model, sched, c, guidance=1e-6, generator=gen(0)), uncond)
    assert not torch.equal(sample(model, sched, c, guidance=5.0, generator=gen(0)), plain)


def test_guided_formula() -> None:
    g = gen(0)
    lc, lu = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    assert torch.allclose(guided(lc, lu, 1.0), F.log_softmax(lc, -1), atol=1e-6)
    assert torch.allclose(guided(lc, lu, 0.0), F.log_softmax(lu, -1), atol=1e-6)
    out = guided(lc, lu, 30.0)
    assert out.max() <= 0 and out.min() >= -70
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 5), atol=1e-5)
    want = F.log_softmax(F.log_softmax(lu, -1) + 3 * (F.log_softmax(lc, -1) - F.log_softmax(lu, -1)), -1)
    assert torch.allclose(guided(lc, lu, 3.0), want, atol=1e-5)


@pytest.mark.parametrize("r", [0.3, 0.85, 0.9, 0.999])
def test_truncation_keeps_smallest_top_set(r: float) -> None:
    log_p = F.log_softmax(2 * torch.randn(50, 20, generator=gen(1)), -1)
    out = truncate(log_p, r)
    assert torch.allclose(out.exp().sum(-1), torch.ones(50), atol=1e-5)
    kept = out > -69
    p = log_p.exp()
    for row in range(50):
        sp, order = p[row].sort(descending=True)
        m = int((sp.cumsum(0) < r).sum()) + 1  # first prefix reaching r
        want = torch.zeros(20, dtype=torch.bool)
        want[order[:m]] = True
        assert torch.equal(kept[row], want)
        assert p[row][kept[row]].sum() >= r and p[row][kept[row]].sum() - p[row][order[m - 1]] < r
        assert torch.allclose(out[row][kept[row]].exp(), p[row][kept[row]] / p[row][kept[row]].sum(), atol=1e-5)
    assert torch.equal(truncate(log_p, 1.0), log_p)


def test_truncated_sampling_stays_in_kept_set(sched) -> None:
    logits = torch.tensor([4.0, 3.0, 2.0, -1.0, -2.0, -3.0, -4.0]).repeat(12, 1)
    codes = sample(Fixed(logits), sched, None, n=64, truncation=0.9, generator=gen(0))
    keep = F.softmax(logits[0], -1).sort(descending=True).values.cumsum(0)
    m = int((keep < 0.9).sum()) + 1
    assert codes.max() < m and len(codes.unique()) == m


@pytest.mark.parametrize("purity", [False, True])
def test_confident_model_is_reproduced(sched, purity: bool) -> None:
    target = torch.arange(12) % CFG.n_codes
    fixed = Fixed(F.one_hot(target, CFG.n_codes).float() * 40)
    out = sample(fixed, sched, None, n=3, steps=5, purity=purity, generator=gen(0))
    assert torch.equal(out, target.view(3, 4).expand(3, -1, -1))


def test_purity_reveals_purest_first(sched) -> None:
    K, N = CFG.n_codes, 12
    sharp = torch.linspace(0.1, 6.0, N)[torch.randperm(N, generator=gen(3))]  # purity in random order
    log_x0 = F.log_softmax(sharp[:, None] * torch.randn(N, K, generator=gen(4)), -1).expand(2, -1, -1)
    purity = log_x0[0].exp().amax(-1)
    x = torch.full((2, N), K)
    t, s = 10, 6
    n_stay = round(N * float(sched.gbar[s] / sched.gbar[t]))
    x1 = purity_step(x, log_x0, t, s, sched, generator=gen(0))
    revealed = x1[0] != K
    assert revealed.sum() == N - n_stay and torch.equal(x1[0] != K, x1[1] != K)
    assert purity[revealed].min() > purity[~revealed].max()
    x2 = purity_step(x1, log_x0, s, 3, sched, generator=gen(1))
    assert torch.equal(x2[revealed.expand(2, -1)], x1[revealed.expand(2, -1)])  # revealed codes stay
    assert purity[x2[0] != K].min() > purity[x2[0] == K].max()
    assert (purity_step(x2, log_x0, 3, 0, sched, generator=gen(2)) != K).all()


def test_purity_sharpening_concentrates_codes(sched) -> None:
    log_x0 = F.log_softmax(torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]), -1).expand(500, 12, -1)
    x = torch.full((500, 12), CFG.n_codes)
    plain = purity_step(x, log_x0, 1, 0, sched, 0.0, gen(0))
    sharp = purity_step(x, log_x0, 1, 0, sched, 50.0, gen(0))
    assert (sharp == 0).float().mean() > (plain == 0).float().mean() + 0.2


def test_rejects_mismatch_and_missing_n(model) -> None:
    with pytest.raises(ValueError):
        sample(model, Schedule(CFG.n_codes, 20), conds())
    with pytest.raises(ValueError):
        sample(model, Schedule(CFG.n_codes, CFG.steps), None)
