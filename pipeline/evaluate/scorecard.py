"""reports/scorecard.json: the headline figures as flat keys, for people and `dvc metrics diff`.

Read from the evaluate stage's full metrics and the conditioning CLIP's report; each key names
what scored it (``align_*``: the CLIP-free checker; ``fd_*_clip``/``fd_floor_*``: the scoring
CLIP; ``clip_*``: the conditioning CLIP). A figure a run could not measure (a prompt set it did
not have, a world without a checker) is left out rather than filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTRIBUTE_KEYS = ("colour", "shape", "size", "position", "all")


def _half_width(interval: list[float]) -> float:
    return (interval[1] - interval[0]) / 2


def scorecard(metrics: Mapping[str, Any], clip_report: Mapping[str, Any], pseudo_text: str) -> dict[str, Any]:
    card: dict[str, Any] = {"pseudo_text": pseudo_text}
    if "scored_by" in metrics:
        card["scored_by_clip"] = metrics["scored_by"]["clipscore"]
    alignment = metrics.get("alignment", {})
    for name in ("seen", "heldout"):
        generated = alignment.get(name, {}).get("generated")
        if generated is None:
            continue
        for key in ATTRIBUTE_KEYS:
            if key in generated:
                card[f"align_{name}_{key}"] = generated[key]
        card[f"ci95_align_{name}_all"] = _half_width(generated["all_ci95"])
        card[f"floor_align_{name}_all"] = alignment[name]["random_real_floor"]["all"]
    if "new_wording" in alignment:
        card["align_new_wording_all"] = alignment["new_wording"]["generated"]["all"]
    if "partial" in alignment:
        card["align_partial_named"] = alignment["partial"]["generated"]["named_all"]
        card["ci95_align_partial_named"] = _half_width(alignment["partial"]["generated"]["named_all_ci95"])
    gap = clip_report.get("gap")
    if gap is not None:
        card["clip_matched_cosine"] = gap["matched_cosine"]
        card["clip_centroid_distance"] = gap["centroid_distance"]
    frechet = metrics["frechet"]
    distance = next(k for k in frechet["samples"] if k.startswith(("fd_", "fid_")))
    card[f"{distance}_eval" if distance == "fid_inception" else "fd_eval_clip"] = frechet["samples"][distance]
    card["fd_floor_real"] = frechet["real_vs_real"][distance]
    card["fd_floor_recon"] = frechet["reconstructions"][distance]
    card["fd_scrambled"] = frechet["scrambled_token_baseline"][distance]
    card["fd_n"] = frechet["samples"]["n_generated"]
    if "checker" in metrics:
        card["checker_acc_fresh"] = metrics["checker"]["fresh_renders"]["all"]
        card["checker_acc_recon"] = metrics["checker"]["reconstructions"]["all"]
    card["clipscore_hessel_mean"] = metrics["clipscore"]["clipscore_hessel_mean"]
    card["clipscore_hessel_best_of_n"] = metrics["clipscore"]["clipscore_hessel_best_of_n"]
    return card
