"""The tokenizer's training losses, apart from the model (as taming-transformers keeps them):
the codebook-usage term, a patch-GAN discriminator with hinge losses and VQGAN's adaptive
GAN weight, and a VGG16 perceptual loss whose weights must be a local file (nothing is
ever downloaded)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core import distributed
from pipeline.core.torch_files import load_tensors
from pipeline.tokenizer.model import norm_layer


def usage_deficit(code_mean: torch.Tensor) -> torch.Tensor:
    """log K - entropy of the average code distribution: 0 when the batch uses every code
    equally. Unlike the per-position KL it rewards spreading positions over different codes,
    which keeps the codebook from collapsing. Under DDP, average ``code_mean`` over the ranks
    first (distributed.mean_with_grad) so that it is the global batch's."""
    return math.log(len(code_mean)) + (code_mean * code_mean.clamp_min(1e-12).log()).sum()


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided convs to a map of real/fake logits, one per receptive-field patch."""

    def __init__(self, ch: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, n_layers):
            c_next = ch * min(2 ** i, 8)
            layers += [nn.Conv2d(c, c_next, 4, stride=2, padding=1), norm_layer(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        layers += [nn.Conv2d(c, c, 3, padding=1), norm_layer(c), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def discriminator_for(resolution: int) -> PatchDiscriminator:
    """Enough stride-2 layers to leave a 4x4 patch map or more (2 at 32 px, 3 from 64 px)."""
    return PatchDiscriminator(n_layers=max(1, min(3, int(math.log2(resolution)) - 3)))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance: scale the GAN gradient at the decoder's last layer to the size of the
    reconstruction gradient there, so disc_weight means the same across models and steps.
    In data-parallel training both gradients are averaged over the ranks first, so the
    weight is the global batch's, as DDP makes the parameter gradients."""
    rec_grad = distributed.mean(torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0])
    g_grad = distributed.mean(torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0])
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, 1e4).detach()


# VGG16 conv widths ("M" = max-pool), up to relu5_3; layer indices match torchvision's
# `vgg16().features`, so its state_dict keys ("features.N.weight") load as they are.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG_TAPS = (3, 8, 15, 22, 29)  # indices right after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for width in _VGG16:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance with equal layer weights: unit-normalised VGG16 features compared
    at five depths. Frozen; the weights come from a local file holding a torchvision VGG16
    state_dict (the "features.*" entries are used). Nothing is downloaded."""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"perceptual_weights: {path} not found; give a local torchvision VGG16 state_dict file "
                "or set perceptual_weights: null (weights are never downloaded)")
        state = load_tensors(path, "VGG16 state_dict")
        self.features = vgg16_features()
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                       if k.startswith("features.")})
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always frozen

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        h, taps = ((images + 1) / 2 - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _VGG_TAPS:
                taps.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum((fa - fb).pow(2).sum(1).mean() for fa, fb in zip(self._taps(a), self._taps(b)))
