"""LAFITE's training losses, each a pure function of logits or features.

The GAN is StyleGAN2's: non-saturating losses and an R1 penalty on real images. LAFITE adds two
contrastive (InfoNCE) terms that tie images to their conditions across the batch: on the
discriminator's projected features of real images (itd) and on the CLIP embedding of generated
images (itc). Following the paper, each condition h'_i picks its own image out of the batch's
images (a softmax over images j for each condition i); the paper's tau prefactor is left to the
loss weights, as in its released code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_adversarial(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """softplus(-D(real)) + softplus(D(fake)), batch means."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_adversarial(fake_logits: Tensor) -> Tensor:
    """softplus(-D(fake)): non-saturating, so G still gets gradients when D rejects its images."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor, gamma: float) -> Tensor:
    """gamma/2 * E ||grad_x D(x)||^2 on real images (``real_images`` must require grad): keeps D
    flat on the data, which stabilises training. Differentiable, so D can minimise it."""
    grad, = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return gamma / 2 * grad.square().sum((1, 2, 3)).mean()


def info_nce(features: Tensor, cond: Tensor, temperature: float) -> Tensor:
    """Mean over i of -log softmax_j(cos(h'_i, f_j) / tau)[i]: features (B, D) of the batch's
    images, cond (B, D) their conditions. Both LAFITE terms: itd with D's f_c(f_d(x)) of real
    images, itc with the CLIP embedding of generated ones."""
    similarity = F.normalize(cond.float(), dim=1) @ F.normalize(features.float(), dim=1).T
    return F.cross_entropy(similarity / temperature, torch.arange(len(cond), device=cond.device))

