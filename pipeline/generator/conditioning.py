"""How a generator was conditioned, kept in its model file: it decides how prompts are fed to it."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.generator.pseudo_text import ConditionMeans, Mode


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """The pseudo-text setting a generator trained with, and C3's means when it used them."""
    mode: Mode
    scale: float
    means: ConditionMeans | None  # C3's modality means; None for the other modes

    def to_file(self) -> dict[str, Any]:
        means = None if self.means is None else {"image": self.means.image.float().cpu(),
                                                   "text": self.means.text.float().cpu()}
        return {"mode": self.mode, "scale": self.scale, "means": means}

    @classmethod
    def from_file(cls, saved: dict[str, Any]) -> Conditioning:
        means = saved["means"]
        return cls(saved["mode"], saved["scale"], None if means is None else ConditionMeans(**means))
