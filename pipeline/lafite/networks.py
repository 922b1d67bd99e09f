"""LAFITE's networks (Zhou et al., CVPR 2022): a StyleGAN2-style generator whose every style is
steered by the condition, and a residual discriminator with a projection head.

Every weight uses StyleGAN's equalised learning rate: stored as N(0, 1) and scaled by
1/sqrt(fan_in) at run time, so Adam moves all layers at the same relative speed whatever their
width. Activations are leaky ReLU(0.2) times sqrt(2), which keeps the signal's variance.
These modules take plain arguments; pipeline/lafite/model.py builds them from a LafiteConfig.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from pipeline.core.rng import normal

W_AVG_BETA = 0.995  # StyleGAN's running mean of w, for truncation


def leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def normalise_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rows scaled to unit mean square: z and the condition embedding enter the mapping on one scale."""
    return x * (x.square().mean(1, keepdim=True) + eps).rsqrt()


def channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: fewer as the maps grow."""
    return min(channel_base // resolution, channel_max)


def resolutions(resolution: int) -> list[int]:
    """4, 8, ... up to the image side, which must be a power of two >= 4."""
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"LAFITE generates square images with a power-of-two side >= 4, got {resolution}")
    return [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate; ``lr_mult`` slows it down (StyleGAN's mapping: 0.01)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mult: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mult))
        self.weight_gain, self.bias_gain, self.activate = lr_mult / math.sqrt(in_features), lr_mult, activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return leaky(x) if self.activate else x


class EqualConv2d(nn.Module):
    """A same-padded convolution with equalised learning rate (the discriminator's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain, self.activate = 1 / math.sqrt(in_channels * kernel * kernel), activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return leaky(x) if self.activate else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution, with LAFITE's fused style s = A(w) + C(h').

    Scaling the input channels by s, convolving with the shared weight and scaling the output
    channels by the demodulation factor computes the same as convolving with per-sample weights
    w * s (demodulated), without building B kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, clip_dim: int,
                 demodulate: bool) -> None:
        super().__init__()
        self.affine_w = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.affine_c = EqualLinear(clip_dim, in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain, self.demodulate = 1 / math.sqrt(in_channels * kernel * kernel), demodulate

    def forward(self, x: Tensor, w: Tensor, cond: Tensor) -> Tensor:
        style = self.affine_w(w) + self.affine_c(cond)  # (B, in)
        weight = self.weight * self.weight_gain
        x = F.conv2d(x * style[:, :, None, None], weight, padding=weight.shape[-1] // 2)
        if self.demodulate:  # each output channel back to unit expected scale, per sample
            x = x * (style.square() @ weight.square().sum((2, 3)).T + 1e-8).rsqrt()[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """(2x bilinear upsampling,) modulated 3x3 conv, per-pixel noise with a learned per-channel
    strength (stochastic detail), bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, clip_dim: int, up: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, clip_dim, demodulate=True)
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.up = up

    def forward(self, x: Tensor, w: Tensor, cond: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w, cond)
        noise = normal((x.shape[0], 1, *x.shape[2:]), x.device, generator).to(x.dtype)
        return leaky(x + noise * self.noise_strength[:, None, None] + self.bias[:, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 conv to RGB, not demodulated: the colours keep the style's scale."""

    def __init__(self, in_channels: int, w_dim: int, clip_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, clip_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: Tensor, w: Tensor, cond: Tensor) -> Tensor:
        return self.conv(x, w, cond) + self.bias[:, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: a learned 4x4 constant and one layer at 4 px, else an upsampling layer and
    a second layer; its RGB is added to the upsampled RGB of the blocks before (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, w_dim: int, clip_dim: int) -> None:
        super().__init__()
        first = resolution == 4
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if first else None
        self.layers = nn.ModuleList(
            ([] if first else [SynthesisLayer(in_channels, out_channels, w_dim, clip_dim, up=True)])
            + [SynthesisLayer(out_channels, out_channels, w_dim, clip_dim, up=False)])
        self.to_rgb = ToRGB(out_channels, w_dim, clip_dim)

    def forward(self, x: Tensor | None, rgb: Tensor | None, w: Tensor, cond: Tensor,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        if self.const is not None:
            x = self.const.expand(w.shape[0], -1, -1, -1)
        for layer in self.layers:
            x = layer(x, w, cond, generator)
        out = self.to_rgb(x, w, cond)
        if rgb is not None:
            out = out + F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        return x, out


class MappingNetwork(nn.Module):
    """[normalised z, normalised linear(h')] -> MLP -> w, with w's running mean for truncation."""

    def __init__(self, z_dim: int, clip_dim: int, w_dim: int, layers: int, lr_mult: float = 0.01) -> None:
        super().__init__()
        self.embed = EqualLinear(clip_dim, w_dim)
        widths = [z_dim + w_dim] + [w_dim] * layers
        self.mlp = nn.Sequential(*[EqualLinear(a, b, lr_mult=lr_mult, activate=True)
                                   for a, b in zip(widths[:-1], widths[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, cond: Tensor, psi: float = 1.0, update_w_avg: bool = False) -> Tensor:
        w = self.mlp(torch.cat([normalise_2nd_moment(z), normalise_2nd_moment(self.embed(cond))], dim=1))
        if update_w_avg:
            self.w_avg.lerp_(w.detach().mean(0).float(), 1 - W_AVG_BETA)
        return w if psi == 1 else self.w_avg.to(w.dtype).lerp(w, psi)


class Generator(nn.Module):
    """(z, h') -> images (B, 3, R, R), roughly in [-1, 1] (not squashed: samples are clamped when
    turned into pixels, as StyleGAN2 does, so no tanh saturates the gradients)."""

    def __init__(self, resolution: int, z_dim: int, w_dim: int, mapping_layers: int, channel_base: int,
                 channel_max: int, clip_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, clip_dim, w_dim, mapping_layers)
        sides = resolutions(resolution)
        widths = [channels(r, channel_base, channel_max) for r in sides]
        self.blocks = nn.ModuleList(SynthesisBlock(widths[max(i - 1, 0)], widths[i], r, w_dim, clip_dim)
                                    for i, r in enumerate(sides))

    def forward(self, z: Tensor, cond: Tensor, generator: torch.Generator | None = None, psi: float = 1.0,
                update_w_avg: bool = False) -> Tensor:
        """Per-pixel noise comes from ``generator``; ``psi`` < 1 pulls w towards its mean (the
        condition's own path C(h') into each style is not truncated)."""
        w = self.mapping(z, cond, psi, update_w_avg)
        x = rgb = None
        for block in self.blocks:
            x, rgb = block(x, rgb, w, cond, generator)
        return rgb

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel: the mean standard deviation of the features over groups of samples, so
    D can see a batch lacking variety (mode collapse)."""
    b, c, h, w = x.shape
    group = min(group_size, b)
    while b % group:
        group -= 1
    y = x.reshape(group, b // group, c, h, w)
    y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B / group,)
    return torch.cat([x, y.repeat(group)[:, None, None, None].expand(b, 1, h, w)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs halving the side, plus a 1x1 downsampled skip (StyleGAN2's residual D)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activate=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activate=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (x + skip) / math.sqrt(2)  # the sum of two unit-variance paths back to unit variance


class Discriminator(nn.Module):
    """x -> f_d(x), a feature vector; logit = linear(f_d) + <h', f_c(f_d)> (the projection
    discriminator), with f_c(f_d) also returned for the contrastive loss."""

    def __init__(self, resolution: int, channel_base: int, channel_max: int, clip_dim: int) -> None:
        super().__init__()
        sides = resolutions(resolution)[::-1]  # R, R/2, ..., 4
        widths = [channels(r, channel_base, channel_max) for r in sides]
        self.from_rgb = EqualConv2d(3, widths[0], 1, activate=True)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        last = widths[-1]
        self.conv = EqualConv2d(last + 1, last, 3, activate=True)
        self.features = EqualLinear(last * 16, last, activate=True)
        self.out = EqualLinear(last, 1)
        self.project = EqualLinear(last, clip_dim)  # f_c

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B,) and f_c(f_d(x)) (B, clip_dim)."""
        x = self.conv(minibatch_stddev(self.blocks(self.from_rgb(x))))
        f = self.features(x.flatten(1))
        projected = self.project(f)
        return self.out(f).squeeze(1) + (projected * cond).sum(1), projected
