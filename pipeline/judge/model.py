"""The judge: a small CNN that reads a world's attributes off an image, one linear head per
attribute, so generated images can be scored without any CLIP (a world with no rule checker,
such as real faces, needs one).

The file holds the attributes (name -> values) with the weights, so the judge knows nothing of
params or worlds: ``load_judge`` alone gives a model that answers in the world's own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import UserError
from pipeline.core.images import ImageBatch, as_uint8_nchw
from pipeline.core.torch_files import load_tensors


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Judge(nn.Module):
    """Four stride-2 stages (width, 2w, 4w, 8w channels; two 3x3 conv-BN-ReLU each), a global
    average pool and one linear head per attribute.

    BatchNorm rather than GroupNorm: a group norm removes each image's overall brightness and
    tint, which carry skin tone and age cues. Inputs are uint8 and resized to ``resolution``
    (the size it trained at), so it reads any image size at the scale it learnt.
    """

    def __init__(self, attributes: Mapping[str, Sequence[str]], width: int, resolution: int) -> None:
        super().__init__()
        self.attributes = {name: tuple(values) for name, values in attributes.items()}
        self.config = {"attributes": {name: list(v) for name, v in self.attributes.items()}, "width": width,
                       "resolution": resolution}
        self.resolution = resolution
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            layers += _conv(c_in, c_out, 2) + _conv(c_out, c_out, 1)
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(c_in, len(values)) for name, values in self.attributes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, H, W) -> logits per attribute, (N, number of its values)."""
        x = images.float() / 127.5 - 1.0
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def classify(self, images: ImageBatch, batch_size: int = 256) -> dict[str, list]:
        """Each image's most likely value per attribute, plus "found" (always True: the judge
        always answers, unlike the shapes checker, which can find no object)."""
        images = as_uint8_nchw(images)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        predicted: dict[str, list] = {name: [] for name in self.attributes}
        for start in range(0, len(images), batch_size):
            logits = self(images[start:start + batch_size].to(device))
            for name, values in self.attributes.items():
                predicted[name] += [values[i] for i in logits[name].argmax(1).tolist()]
        self.train(was_training)
        return {**predicted, "found": [True] * len(images)}


def save_judge(model: Judge, path: str | Path) -> None:
    """Weights plus the constructor arguments (attributes included), written atomically."""
    with atomic_file(path) as tmp:
        torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp)


def load_judge(path: str | Path, device: torch.device | str = "cpu") -> Judge:
    if not Path(path).is_file():
        raise UserError(f"{path}: no trained judge; run the judge stage (`dvc repro judge`)")
    saved = load_tensors(path, "judge model")
    model = Judge(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()
