"""Reverse diffusion: from all-[MASK] grids to code grids, conditioned on CLIP embeddings.

The condition is whatever CLIP vector the caller passes (a text embedding at inference, an
image embedding for reconstruction-style checks) or none (the model's null embedding).
Each step predicts p(x0 | x_t, c), optionally applies classifier-free guidance and
truncation, then moves to an earlier step s either with the exact posterior
sum_x0 q(x_s | x_t, x0) p(x0) (s = t-1, or a skip when fewer steps are asked for) or with
purity-ordered unmasking.

Purity ordering (after improved VQ-Diffusion), exactly as implemented here:
- purity of a position = max_k p(x0 = k | x_t) of its (guided, truncated) prediction;
- of the M positions still [MASK] in a sample, round(M * gbar_s / gbar_t) stay masked
  (gbar_s / gbar_t is the true posterior probability of staying masked), and the others,
  taken in order of decreasing purity, are revealed (ties: lower position first);
- revealed codes are drawn from softmax((1 + sharpen * purity) * log p(x0)) of their position;
- positions already holding a code keep it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.core.device import autocast
from pipeline.diffusion.process import LOG_ZERO, Schedule, log_posterior, sample_categorical


def timesteps(total: int, n: int) -> list[int]:
    """n evenly spaced steps from T down to 0: [T, ..., 0] with n + 1 entries (n <= T)."""
    if not 1 <= n <= total:
        raise ValueError(f"number of sampling steps must be in 1..{total}, got {n}")
    return torch.linspace(total, 0, n + 1, dtype=torch.float64).round().long().tolist()


def guided(logits_c: Tensor, logits_u: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: log p(null) + s (log p(c) - log p(null)), renormalised, clamped."""
    log_c, log_u = F.log_softmax(logits_c.float(), -1), F.log_softmax(logits_u.float(), -1)
    return F.log_softmax(log_u + scale * (log_c - log_u), -1).clamp(LOG_ZERO, 0.0)


def truncate(log_p: Tensor, r: float) -> Tensor:
    """Keep the smallest set of most probable codes with cumulative probability >= r, renormalise."""
    if not 0.0 < r <= 1.0:
        raise ValueError(f"truncation r must be in (0, 1], got {r}")
    if r == 1.0:
        return log_p
    sorted_lp, order = log_p.sort(-1, descending=True)
    before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()  # mass strictly above each entry
    keep_sorted = before < r
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return F.log_softmax(log_p.masked_fill(~keep, -torch.inf), -1).clamp(LOG_ZERO, 0.0)


def posterior_step(x_t: Tensor, log_x0: Tensor, t: int, s: int, schedule: Schedule,
                   generator: torch.Generator | None = None) -> Tensor:
    """Draw x_s ~ sum_x0 q(x_s | x_t, x0) p(x0); at s = 0 that is p(x0) itself."""
    if s == 0:
        return sample_categorical(log_x0, generator)
    B = x_t.shape[0]
    tt = torch.full((B,), t, dtype=torch.long)
    ss = torch.full((B,), s, dtype=torch.long)
    return sample_categorical(log_posterior(log_x0, x_t, tt, ss, schedule), generator)


def purity_step(x_t: Tensor, log_x0: Tensor, t: int, s: int, schedule: Schedule, sharpen: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Reveal the purest masked positions (see the module docstring for the exact rule)."""
    K = schedule.n_codes
    masked = x_t == K
    purity = log_x0.exp().amax(-1)
    codes = sample_categorical((1 + sharpen * purity)[..., None] * log_x0, generator)
    n_masked = masked.sum(1)
    keep_frac = float(schedule.gbar[s] / schedule.gbar[t]) if schedule.gbar[t] > 0 else 0.0
    stay = torch.round(n_masked.double() * keep_frac).long()
    n_reveal = n_masked - stay
    score = purity.masked_fill(~masked, -1.0)
    order = score.argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    reveal = masked & (rank < n_reveal[:, None])
    return torch.where(reveal, codes, x_t)


def predict_log_x0(model: nn.Module, x_t: Tensor, t: int, cond: Tensor | None, guidance: float) -> Tensor:
    """log p(x0 | x_t, c) (B, N, K); cond None (or guidance 0) is the unconditional model,
    guidance 1 the plain conditional one, anything else guided (one batched forward)."""
    B = x_t.shape[0]
    tt = torch.full((B,), t, dtype=torch.long, device=x_t.device)
    conditional = cond is not None and guidance != 0.0
    if cond is None:
        cond = torch.zeros(B, model.cfg.clip_dim, device=x_t.device)
    with autocast(x_t.device):
        if not conditional or guidance == 1.0:
            drop = torch.full((B,), not conditional, device=x_t.device)
            logits = model(x_t, tt, cond, drop)
            return F.log_softmax(logits.float(), -1).clamp(LOG_ZERO, 0.0)
        drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(x_t.device)
        logits = model(x_t.repeat(2, 1), tt.repeat(2), cond.repeat(2, 1), drop)
    return guided(logits[:B], logits[B:], guidance)


@torch.no_grad()
def sample(model: nn.Module, schedule: Schedule, cond: Tensor | None, *, n: int | None = None,
           steps: int | None = None, guidance: float = 1.0, truncation: float = 1.0,
           purity: bool = False, purity_sharpen: float = 0.0,
           generator: torch.Generator | None = None) -> Tensor:
    """Code grids (B, h, w) long from all-[MASK] starts.

    cond: (B, clip_dim) CLIP embeddings, or None for unconditional samples (then n = B).
    steps: number of reverse steps, evenly spaced over T (None = all T).
    The same generator seed on the same device gives the same codes.
    """
    cfg = model.cfg
    if cfg.n_codes != schedule.n_codes or cfg.steps != schedule.steps:
        raise ValueError(f"model (K={cfg.n_codes}, T={cfg.steps}) does not match the schedule "
                         f"(K={schedule.n_codes}, T={schedule.steps})")
    device = next(model.parameters()).device
    if cond is not None:
        cond = cond.to(device, torch.float32)
        n = cond.shape[0]
    elif n is None:
        raise ValueError("unconditional sampling needs n")
    x = torch.full((n, cfg.grid_h * cfg.grid_w), schedule.n_codes, dtype=torch.long, device=device)
    ts = timesteps(schedule.steps, schedule.steps if steps is None else steps)
    for t, s in zip(ts[:-1], ts[1:]):
        log_x0 = truncate(predict_log_x0(model, x, t, cond, guidance), truncation)
        if purity:
            x = purity_step(x, log_x0, t, s, schedule, purity_sharpen, generator)
        else:
            x = posterior_step(x, log_x0, t, s, schedule, generator)
    return x.view(n, cfg.grid_h, cfg.grid_w)
