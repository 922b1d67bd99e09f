"""VQ-Diffusion mask-and-replace discrete diffusion over K codes plus [MASK] (index K).

Conventions used throughout:
- Steps are 1-based: t in 1..T; index 0 of every schedule array is the identity (no noise).
- Token tensors are (B, N) long with values in 0..K; distributions are log-probabilities
  with the class last: over x_0 they are (B, N, K) (x_0 is never [MASK]), over x_t they are
  (B, N, K+1).
- Log-probabilities are clamped to [LOG_ZERO, 0]; log(0) is represented by LOG_ZERO so that
  log-space arithmetic never meets -inf or NaN (exp(-70) ~ 4e-31 is negligible).

[MASK] handling: the network's x_0 prediction has no [MASK] entry (x_0 is a code); [MASK] is
absorbing in the forward process (the [MASK] row of every Q is one-hot on [MASK]); posteriors
and the KL of the variational bound run over all K+1 values of x_{t-1}, so the probability of
staying masked is part of the bound (it is identical in the true and predicted posterior when
x_t is [MASK], and zero in both when x_t is a code, so it contributes no gradient but keeps
every distribution normalised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.core.rng import uniform

LOG_ZERO = -70.0
_TINY = 1e-30  # floor inside log() for schedule values that are 0: log(1e-30) = -69.1
MIN_REPLACE = 1e-9  # least 1 - abar - gbar a schedule may leave (bbar >= 1e-9 / K, far above e^LOG_ZERO)


def _log(x: Tensor) -> Tensor:
    return torch.log(x.clamp(min=_TINY)).clamp(min=LOG_ZERO)


def sample_categorical(log_p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Inverse-CDF sample over the last dim; log_p need not be normalised.

    One uniform per row against the running sum of the probabilities: two passes over the
    classes and no per-class noise or logarithms, about a third of what Gumbel-max costs at
    K = 4096. The CPU accumulates the sum in float64; classes below ~1e-7 of their row (the
    float32 resolution) are never drawn, the same floor float32 Gumbel noise has.
    """
    cdf = (log_p - log_p.amax(-1, keepdim=True)).exp_().cumsum_(-1)
    u = 1.0 - uniform((*log_p.shape[:-1], 1), log_p.device, generator)  # in (0, 1], so an empty class is never hit
    return torch.searchsorted(cdf, u * cdf[..., -1:]).squeeze(-1)


class Schedule:
    """Cumulative mask-and-replace schedule (abar, gbar, bbar) and its per-step factors.

    abar_t (keep x_0) falls and gbar_t (be [MASK]) rises linearly over t = 1..T between the
    given endpoints; bbar_t = (1 - abar_t - gbar_t) / K is the chance of each code. Stored in
    float64 because 1 - gbar_t reaches 1e-5 and the per-step ratios need the digits.
    """

    def __init__(self, n_codes: int, steps: int = 100, abar_start: float = 0.99999,
                 abar_end: float = 9e-6, gbar_start: float = 9e-6, gbar_end: float = 0.99999) -> None:
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        if n_codes < 2:
            raise ValueError(f"n_codes must be >= 2, got {n_codes}")
        u = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        abar = abar_start + u * (abar_end - abar_start)
        gbar = gbar_start + u * (gbar_end - gbar_start)
        # 1 - abar - gbar is the uniform-replace share; at 0 log(bbar) meets LOG_ZERO, and posteriors
        # of a one-hot x0 no longer sum to 1 (the floor stands in for both "impossible" and "tiny")
        if (abar < 0).any() or (gbar < 0).any() or (gbar >= 1).any() or (1 - abar - gbar < MIN_REPLACE).any():
            raise ValueError(f"schedule needs 0 <= abar, 0 <= gbar < 1 and abar + gbar <= 1 - {MIN_REPLACE:g} at "
                             "every step (train.abar_range, train.gbar_range)")
        one = torch.ones(1, dtype=torch.float64)
        self.n_codes = n_codes
        self.steps = steps
        self.abar = torch.cat([one, abar])
        self.gbar = torch.cat([one * 0, gbar])
        self.bbar = ((1 - self.abar - self.gbar) / n_codes).clamp(min=0)
        t = torch.arange(1, steps + 1)
        a, g, b = self.transition(t - 1, t)
        # every step's own probabilities, before any clamp (1e-12: float64 rounding at a constant abar / (1 - gbar))
        if (a > 1).any() or (g < 0).any() or (1 - a - g < -1e-12).any():
            raise ValueError("schedule needs abar falling, gbar rising and abar / (1 - gbar) never rising, so that "
                             "every step is a valid mask-and-replace transition (train.abar_range, train.gbar_range)")
        self.alpha = torch.cat([one, a])
        self.gamma = torch.cat([one * 0, g])
        self.beta = torch.cat([one * 0, b])

    def transition(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(alpha, gamma, beta) of the one-jump transition from step s to step t > s.

        Mask-and-replace matrices are closed under products, so Q_{s+1}...Q_t is again
        mask-and-replace with alpha = abar_t/abar_s and 1 - gamma = (1 - gbar_t)/(1 - gbar_s).
        """
        s, t = s.cpu(), t.cpu()
        alpha = self.abar[t] / self.abar[s]
        gamma = 1 - (1 - self.gbar[t]) / (1 - self.gbar[s])
        beta = ((1 - alpha - gamma) / self.n_codes).clamp(min=0)
        return alpha, gamma, beta


def _col(x: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(B,) float64 schedule values -> (B, 1, 1) log-values of the given dtype on device."""
    return _log(x).to(device, dtype)[:, None, None]


def q_sample(x0: Tensor, t: Tensor, schedule: Schedule, generator: torch.Generator | None = None) -> Tensor:
    """Draw x_t ~ q(x_t | x_0): [MASK] w.p. gbar_t, else keep x_0 w.p. abar_t/(1-gbar_t), else a
    uniform code (which may be x_0 again: that is where the extra bbar_t of staying comes from)."""
    K = schedule.n_codes
    a = schedule.abar[t.cpu()].to(x0.device)[:, None]
    g = schedule.gbar[t.cpu()].to(x0.device)[:, None]
    u = uniform((3, *x0.shape), x0.device, generator, torch.float64)  # gbar_1 = 9e-6 needs the digits
    uniform_code = (u[2] * K).long().clamp(max=K - 1)
    xt = torch.where(u[1] < a / (1 - g), x0, uniform_code)
    return torch.where(u[0] < g, torch.full_like(x0, K), xt)


@dataclass
class _Factors:
    """Per-position log factors of the posterior (B, N, 1) or (B, 1, 1), split by "x_t's code or not".

    qt / qt_code: log q(x_t | x0 = j) for j off / on x_t's code; step / step_code: log q(x_t | x_s = i)
    for the jump s -> t, likewise; a_s, g_s, b_s: log abar_s, gbar_s, bbar_s (Qbar_s's factors).
    """
    masked: Tensor
    code: Tensor
    qt: Tensor
    qt_code: Tensor
    step: Tensor
    step_code: Tensor
    a_s: Tensor
    g_s: Tensor
    b_s: Tensor


def _factors(x_t: Tensor, t: Tensor, s: Tensor, schedule: Schedule, dtype: torch.dtype) -> _Factors:
    K, device = schedule.n_codes, x_t.device
    masked = (x_t == K)[..., None]

    def pick(on_code: Tensor, otherwise: Tensor, when_masked: Tensor) -> tuple[Tensor, Tensor]:
        return torch.where(masked, when_masked, otherwise), torch.where(masked, when_masked, on_code)

    # log q(x_t | x0 = j): bbar_t off x_t's code, abar_t + bbar_t on it, gbar_t everywhere if x_t is [MASK]
    at, gt, bt = (_col(v[t.cpu()], dtype, device) for v in (schedule.abar, schedule.gbar, schedule.bbar))
    qt, qt_code = pick(torch.logaddexp(at, bt), bt, gt)
    a, g, b = (_col(v, dtype, device) for v in schedule.transition(s, t))
    step, step_code = pick(torch.logaddexp(a, b), b, g)
    a_s, g_s, b_s = (_col(v[s.cpu()], dtype, device) for v in (schedule.abar, schedule.gbar, schedule.bbar))
    code = x_t.clamp(max=K - 1)[..., None]  # x_t's code (any index where masked: its fixes are no-ops)
    return _Factors(masked, code, qt, qt_code, step, step_code, a_s, g_s, b_s)


def _mask_column(f: _Factors, log_z: Tensor) -> Tensor:
    """log of x_s = [MASK]: needs x_t = [MASK] (q(x_t | x_s = [MASK]) is one-hot on [MASK])."""
    return torch.where(f.masked, 0.0, LOG_ZERO) + f.g_s + log_z


def log_posterior(log_x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor, schedule: Schedule) -> Tensor:
    """log sum_{x0} q(x_s | x_t, x0) p(x0) for s < t: (B, N, K+1).

    With a one-hot p(x0) this is the true posterior (true_log_posterior computes that case
    without the dense passes); with the network's p_theta(x0 | x_t) it is the x0-parametrised
    reverse step; s = t-1 is one step, s < t-1 skips steps.
    By Bayes q(x_s|x_t,x0) = q(x_t|x_s) q(x_s|x0) / q(x_t|x0), so the sum is
    q(x_t|x_s) * [Qbar_s applied to v], with v(x0) = p(x0) / q(x_t|x0). Every factor depends
    on the class only through "is it x_t's code or not", so each is a per-position constant
    plus a fix added at that one code (scatter_add), never a (B, N, K) one-hot: with
    Z = sum_j v_j, entry i < K is q(x_t|x_s=i) * (abar_s v_i + bbar_s Z), computed in log space
    as logaddexp(log v_i + log abar_s + log q(x_t|i), log bbar_s + log Z + log q(x_t|i)).
    That is a few element-wise passes over (B, N, K), which is what a reverse step costs at
    K = 4096 (bench/sampler.py).
    log_x0: (B, N, K) log-probabilities; x_t: (B, N) in 0..K; t, s: (B,) long with 0 <= s < t.
    """
    if log_x0.dtype in (torch.float16, torch.bfloat16):
        log_x0 = log_x0.float()
    f = _factors(x_t, t, s, schedule, log_x0.dtype)
    log_v = (log_x0 - f.qt).scatter_add_(-1, f.code, f.qt - f.qt_code)
    log_z = torch.logsumexp(log_v, -1, keepdim=True)
    codes = torch.logaddexp(log_v + (f.a_s + f.step), f.b_s + log_z + f.step)
    codes.scatter_add_(-1, f.code, f.step_code - f.step)
    return torch.cat([codes, _mask_column(f, log_z)], -1).clamp_(LOG_ZERO, 0.0)


def true_log_posterior(x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor, schedule: Schedule) -> Tensor:
    """log q(x_s | x_t, x0) for known codes x0 (B, N): log_posterior of a one-hot x0, without its passes.

    With a one-hot x0 every entry takes one of three values a position (at x0, at x_t's code, and
    one shared by every other code), so they are computed per position with log_posterior's own
    operations in the same order and only then spread over (B, N, K+1). The result is bitwise
    log_posterior's (tests/test_diffusion.py; its log Z rounds to the largest term, the others
    being e^-50 of it or less), so training is unchanged, and a training step at K = 512 and
    256 tokens is about 9% faster. Returns (B, N, K+1) float32.
    """
    K = schedule.n_codes
    f = _factors(x_t, t, s, schedule, torch.float32)
    x0 = x0[..., None]
    x0_is_code = x0 == f.code
    v_x0 = 0.0 - f.qt
    v_other = LOG_ZERO - f.qt
    v_code = torch.where(x0_is_code, v_x0, v_other) + (f.qt - f.qt_code)
    # log sum_j v_j over x0's entry (unless it is x_t's code), the code's, and K - 1 or K - 2 others
    top = torch.maximum(torch.where(x0_is_code, v_other, v_x0), v_code)
    n_other = torch.where(x0_is_code, K - 1.0, K - 2.0)
    total = (torch.where(x0_is_code, 0.0, (v_x0 - top).exp()) + (v_code - top).exp()
             + n_other * (v_other - top).exp())
    log_z = total.log() + top

    def entry(log_v: Tensor) -> Tensor:
        return torch.logaddexp(log_v + (f.a_s + f.step), f.b_s + log_z + f.step)

    out = entry(v_other).expand(*x0.shape[:-1], K + 1).clone()
    out.scatter_(-1, x0, entry(v_x0))
    out.scatter_(-1, f.code, entry(v_code) + (f.step_code - f.step))
    out[..., K:] = _mask_column(f, log_z)
    return out.clamp_(LOG_ZERO, 0.0)


def multinomial_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) over the last dim."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@dataclass
class Losses:
    """loss: the scalar to minimise. vb: per-sample bound term L_t (nats per token, before the
    importance weight; what the t-sampler records). aux: per-sample -log p_theta(x0 | x_t)."""
    loss: Tensor
    vb: Tensor
    aux: Tensor


def diffusion_loss(logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, pt: Tensor,
                   schedule: Schedule, aux_weight: float) -> Losses:
    """Importance-weighted variational bound plus the auxiliary x0 term.

    L_t = mean over positions of KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 1 and of
    -log p(x0 | x_1) for t = 1. loss = mean_b[(L_t + aux_weight * (2 - t/T) * aux) / pt], where
    aux = KL(onehot(x0) || p_theta(x0|x_t)) = -log p_theta(x0|x_t); dividing by pt makes the
    estimate unbiased for the sum over all T terms (as in VQ-Diffusion).
    logits: (B, N, K) network output; x0, x_t: (B, N); t, pt: (B,).
    """
    T = schedule.steps
    log_pred = F.log_softmax(logits.float(), -1).clamp(LOG_ZERO, 0.0)
    s = t - 1
    log_model = log_posterior(log_pred, x_t, t, s, schedule)
    log_true = true_log_posterior(x0, x_t, t, s, schedule)
    kl = multinomial_kl(log_true, log_model).mean(1)
    nll = -log_model.gather(-1, x0[..., None]).squeeze(-1).mean(1)
    vb = torch.where(t == 1, nll, kl)
    aux = -log_pred.gather(-1, x0[..., None]).squeeze(-1).mean(1)
    aux_scale = aux_weight * (2.0 - t.float() / T)
    loss = ((vb + aux_scale * aux) / pt).mean()
    return Losses(loss=loss, vb=vb, aux=aux)


class TimestepSampler:
    """Importance sampling of t from a per-t history of L_t^2 (VQ-Diffusion).

    Uniform until every t has at least min_count recorded losses; then p(t) is proportional
    to sqrt(history_t) + 1e-4, with t = 1 (the small decoder NLL) given t = 2's weight so it
    is not starved. history_t is an EMA of L_t^2 (weight 1 - decay on the new batch mean),
    started at the first observation rather than at 0 so it is unbiased from the start.
    """

    def __init__(self, steps: int, min_count: int = 10, decay: float = 0.9) -> None:
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        self.steps = steps
        self.min_count = min_count
        self.decay = decay
        self.history = torch.zeros(steps, dtype=torch.float64)
        self.count = torch.zeros(steps, dtype=torch.long)

    @property
    def ready(self) -> bool:
        return bool((self.count >= self.min_count).all())

    def probs(self) -> Tensor:
        """p(t) for t = 1..T as a (T,) float64 tensor."""
        if not self.ready:
            return torch.full((self.steps,), 1.0 / self.steps, dtype=torch.float64)
        w = torch.sqrt(self.history + 1e-10) + 1e-4
        w[0] = w[1]
        return w / w.sum()

    def sample(self, batch: int, device: torch.device,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """t (B,) long in 1..T and its probability pt (B,) float32, both on device."""
        p = self.probs()
        if generator is not None:
            p = p.to(generator.device)
        idx = torch.multinomial(p, batch, replacement=True, generator=generator)
        return (idx + 1).to(device), p[idx].float().to(device)

    @torch.no_grad()
    def update(self, t: Tensor, vb: Tensor) -> None:
        """Record per-sample bound terms; repeated t in a batch contribute their mean."""
        idx = t.detach().cpu() - 1
        sq = vb.detach().double().cpu() ** 2
        n = torch.zeros(self.steps, dtype=torch.long).index_add_(0, idx, torch.ones_like(idx))
        total = torch.zeros(self.steps, dtype=torch.float64).index_add_(0, idx, sq)
        seen = n > 0
        mean = total[seen] / n[seen]
        first = self.count[seen] == 0
        old = self.history[seen]
        self.history[seen] = torch.where(first, mean, self.decay * old + (1 - self.decay) * mean)
        self.count += n

    def state_dict(self) -> dict[str, Tensor]:
        return {"history": self.history.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state["history"].shape != (self.steps,):
            raise ValueError(f"t-sampler state has {state['history'].shape[0]} steps, expected {self.steps}")
        self.history = state["history"].to(torch.float64).clone()
        self.count = state["count"].to(torch.long).clone()


Denoiser = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def denoising_loss(model: Denoiser, x0: Tensor, x_t: Tensor, t: Tensor, pt: Tensor, cond: Tensor, drop: Tensor,
                   schedule: Schedule, aux_weight: float) -> Losses:
    """Predict x0 from a noised batch and score it (see diffusion_loss); autocast is the caller's.

    x0, x_t: (B, N) codes; t, pt: (B,); cond: (B, D); drop: (B,) bool (use the null
    embedding). model(x_t, t, cond, drop) -> logits (B, N, K).
    """
    return diffusion_loss(model(x_t, t, cond, drop), x0, x_t, t, pt, schedule, aux_weight)
