"""reports/scorecard.json: the headline figures as flat keys, for people and `dvc metrics diff`.

Read from the evaluate stage's full metrics and the conditioning CLIP's report; each key names
what scored it (``align_*``: the CLIP-free checker; ``fid_inception_eval``/``kid_inception_eval*``:
Inception-v3, else ``fd_eval_clip``/``kd_eval_clip*``: the scoring CLIP; ``fd_floor_*`` and
``fd_scrambled`` in the same space, which ``scored_by_frechet`` names; ``clip_*``: the conditioning
CLIP). A figure a run could not measure (a prompt set it did not have, a world without a
checker) is left out rather than filled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ATTRIBUTE_KEYS = ("colour", "shape", "size", "position", "all")
# The generated samples' distances, metrics key -> scorecard key: Inception-v3's, or the scoring CLIP's.
DISTANCE_HEADLINES = {"fid_inception": "fid_inception_eval", "kid_inception_mean": "kid_inception_eval",
                      "kid_inception_std": "kid_inception_eval_std", "fd_clip": "fd_eval_clip",
                      "kd_clip_mean": "kd_eval_clip", "kd_clip_std": "kd_eval_clip_std"}


def _half_width(interval: list[float]) -> float:
    return (interval[1] - interval[0]) / 2


def scorecard(metrics: Mapping[str, Any], clip_report: Mapping[str, Any], pseudo_text: str) -> dict[str, Any]:
    card: dict[str, Any] = {"pseudo_text": pseudo_text}
    if "scored_by" in metrics:
        card["scored_by_clip"] = metrics["scored_by"]["clipscore"]
        card["scored_by_frechet"] = metrics["scored_by"]["frechet"]
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
        card["ci95_align_new_wording_all"] = _half_width(alignment["new_wording"]["generated"]["all_ci95"])
        card["floor_align_new_wording_all"] = alignment["new_wording"]["random_real_floor"]["all"]
    if "partial" in alignment:
        card["align_partial_named"] = alignment["partial"]["generated"]["named_all"]
        card["ci95_align_partial_named"] = _half_width(alignment["partial"]["generated"]["named_all_ci95"])
        card["floor_align_partial_named"] = alignment["partial"]["random_real_floor"]["named_all"]
    gap = clip_report.get("gap")
    if gap is not None:
        card["clip_matched_cosine"] = gap["matched_cosine"]
        card["clip_centroid_distance"] = gap["centroid_distance"]
    frechet = metrics["frechet"]
    samples = frechet["samples"]
    card |= {name: samples[key] for key, name in DISTANCE_HEADLINES.items() if key in samples}
    distance = "fid_inception" if "fid_inception" in samples else "fd_clip"
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


@dataclass(frozen=True)
class Headline:
    """One row of the report's scorecard: a figure as people read it, with what it is compared to."""

    figure: str
    value: str
    interval: str  # the 95% interval, or why there is none
    floor: str  # the floor or baseline it must beat
    target: str  # the acceptance target, "" when there is none
    met: bool | None  # None: no target
    scored_by: str


CHECKER = "CLIP-free checker"
# per prompt set: its label and its target (the faithful-world issue's acceptance list)
ALIGNMENT_ROWS = (
    ("seen", "alignment, seen prompts (all four attributes)", None),
    ("heldout", "alignment, held-out pairs (all four)", 0.5),
    ("new_wording", "alignment, new wordings (all four)", None),
)
SEEN_TARGETS = {"colour": 0.9, "shape": 0.75, "size": 0.9, "position": 0.9}


def _short(model: str) -> str:
    """A model name with its checkpoint hash cut to 12 digits, as git shortens commits."""
    return re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1", model)


def _bounds(interval: list[float]) -> str:
    return f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def headlines(card: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Headline]:
    """The scorecard's figures with their 95% intervals, floors and targets, for the report."""
    rows = []
    alignment = metrics.get("alignment", {})
    for name, label, target in ALIGNMENT_ROWS:
        if name not in alignment:
            continue
        generated, floor = alignment[name]["generated"], alignment[name]["random_real_floor"]["all"]
        if name == "seen":
            met = all(generated[k] >= v for k, v in SEEN_TARGETS.items())
            wanted = ", ".join(f"{k} >= {v}" for k, v in SEEN_TARGETS.items())
            rows.append(Headline(label, f"{generated['all']:.2f} (shape {generated['shape']:.2f})",
                                 _bounds(generated["all_ci95"]), f"random real images {floor:.3f}", wanted, met,
                                 CHECKER))
        else:
            rows.append(Headline(label, f"{generated['all']:.2f}", _bounds(generated["all_ci95"]),
                                 f"random real images {floor:.3f}", "" if target is None else f">= {target}",
                                 None if target is None else generated["all"] >= target, CHECKER))
    if "partial" in alignment:
        generated, floor = alignment["partial"]["generated"], alignment["partial"]["random_real_floor"]["named_all"]
        rows.append(Headline("alignment, partial prompts (named attributes)", f"{generated['named_all']:.2f}",
                             _bounds(generated["named_all_ci95"]), f"random real images {floor:.3f}", ">= 0.8",
                             generated["named_all"] >= 0.8, CHECKER))
    inception = "fid_inception_eval" in card
    distance, kernel = ("FID (Inception-v3)", "KID") if inception else ("Frechet distance, scoring CLIP's space",
                                                                          "kernel distance, scoring CLIP's space")
    value = card["fid_inception_eval" if inception else "fd_eval_clip"]
    scorer = _short(card.get("scored_by_frechet", ""))
    rows.append(Headline(f"{distance}, N = {card['fd_n']}", f"{value:.4g}", "one sample set (no interval)",
                         f"real vs real {card['fd_floor_real']:.4g}; reconstructions {card['fd_floor_recon']:.4g}; "
                         f"scrambled codes {card['fd_scrambled']:.4g}", "", None, scorer))
    kd = "kid_inception_eval" if inception else "kd_eval_clip"
    if kd in card:
        rows.append(Headline(kernel, f"{card[kd]:.3g}", f"+- {card[kd + '_std']:.2g} (std over subsets)", "", "", None,
                             scorer))
    clipscore = f"{card['clipscore_hessel_mean']:.3f} / {card['clipscore_hessel_best_of_n']:.3f}"
    rows.append(Headline("CLIPScore (Hessel), mean / best of N", clipscore, "-", "", "", None,
                         _short(card.get("scored_by_clip", ""))))
    if "clip_matched_cosine" in card:
        matched, centroids = card["clip_matched_cosine"], card["clip_centroid_distance"]
        rows.append(Headline("conditioning CLIP's gap: matched cosine / centroid distance",
                             f"{matched:.2f} / {centroids:.2f}", "-", "", "0.2-0.45 / >= 0.5",
                             0.2 <= matched <= 0.45 and centroids >= 0.5, "conditioning CLIP (held-out renders)"))
    if "checker_acc_fresh" in card:
        rows.append(Headline("the checker's own accuracy: fresh renders / reconstructions",
                             f"{card['checker_acc_fresh']:.2f} / {card['checker_acc_recon']:.2f}", "-",
                             "the ceiling for generated images", "", None, CHECKER))
    return rows
