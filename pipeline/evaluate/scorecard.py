"""reports/scorecard.json: the headline figures as flat keys, for people and `dvc metrics diff`.

Read from the evaluate stage's full metrics, the conditioning CLIP's report and the tokenizer's
summary; each key names what scored it (``align_*``: the CLIP-free judge, a world's rule checker
or its judge CNN; ``fid_inception_eval``/``kid_inception_eval*``:
Inception-v3, else ``fd_eval_clip``/``kd_eval_clip*``: the scoring CLIP; ``fd_floor_*`` and
``fd_scrambled`` in the same space, which ``scored_by_frechet`` names; ``clip_*``: the conditioning
CLIP; ``checker_acc_*`` / ``judge_acc_*``: the judge on labelled real images). Per prompt set,
``align_<set>_<attribute>``; the unqualified ``align_<attribute>`` are the held-out prompts' (the
faces world's acceptance figures). A figure a run could not measure (a prompt set it did not
have, data of no world) is left out rather than filled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The generated samples' distances, metrics key -> scorecard key: Inception-v3's, or the scoring CLIP's.
DISTANCE_HEADLINES = {"fid_inception": "fid_inception_eval", "kid_inception_mean": "kid_inception_eval",
                      "kid_inception_std": "kid_inception_eval_std", "fd_clip": "fd_eval_clip",
                      "kd_clip_mean": "kd_eval_clip", "kd_clip_std": "kd_eval_clip_std"}


def _half_width(interval: list[float]) -> float:
    return (interval[1] - interval[0]) / 2


def _attribute_keys(figures: Mapping[str, Any]) -> list[str]:
    """The attribute names (and "all") of an accuracy dict: the keys with a 95% interval."""
    return [key.removesuffix("_ci95") for key in figures if key.endswith("_ci95")]


def scorecard(metrics: Mapping[str, Any], clip_report: Mapping[str, Any], pseudo_text: str,
              tokenizer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"pseudo_text": pseudo_text}
    if "scored_by" in metrics:
        card["scored_by_clip"] = metrics["scored_by"]["clipscore"]
        card["scored_by_frechet"] = metrics["scored_by"]["frechet"]
        card["scored_by_alignment"] = metrics["scored_by"]["alignment"]
    alignment = metrics.get("alignment", {})
    for name in ("seen", "heldout"):
        generated = alignment.get(name, {}).get("generated")
        if generated is None:
            continue
        for key in _attribute_keys(generated):
            card[f"align_{name}_{key}"] = generated[key]
        card[f"ci95_align_{name}_all"] = _half_width(generated["all_ci95"])
        card[f"floor_align_{name}_all"] = alignment[name]["random_real_floor"]["all"]
        card[f"align_{name}_best_of_n_all"] = alignment[name]["best_of_n"]["all"]
    if "heldout" in alignment:
        heldout = alignment["heldout"]
        for key in _attribute_keys(heldout["generated"]):
            card[f"align_{key}"] = heldout["generated"][key]
            card[f"ci95_align_{key}"] = _half_width(heldout["generated"][f"{key}_ci95"])
            card[f"floor_align_{key}"] = heldout["random_real_floor"][key]
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
        checker = metrics["checker"]
        if "fresh_renders" in checker:
            card["checker_acc_fresh"] = checker["fresh_renders"]["all"]
        card["checker_acc_real"] = checker["real_heldout"]["all"]
        card["checker_acc_recon"] = checker["reconstructions"]["all"]
        for key in _attribute_keys(checker["real_heldout"]):
            if key != "all":
                card[f"judge_acc_{key}"] = checker["real_heldout"][key]
                card[f"judge_acc_recon_{key}"] = checker["reconstructions"][key]
        if "heldout_pairs" in checker:  # the tokenizer's ceiling on combinations it never saw
            ceiling = checker["heldout_pairs"]["reconstructions"]
            card["checker_acc_recon_heldout"] = ceiling["all"]
            card["ci95_checker_acc_recon_heldout"] = _half_width(ceiling["all_ci95"])
    if tokenizer and "psnr" in tokenizer:
        card["tokenizer_psnr"] = tokenizer["psnr"]
        card["tokenizer_codebook_usage"] = tokenizer["codebook_usage"]
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


# Acceptance targets per world (the faithful-world and faces issues), per prompt set and attribute.
ALIGNMENT_TARGETS = {
    "shapes": {"seen": {"colour": 0.9, "shape": 0.75, "size": 0.9, "position": 0.9}, "heldout": {"all": 0.5},
               "partial": {"named_all": 0.8}},
    "faces": {"heldout": {"gender": 0.8, "age": 0.4, "race": 0.5}},
}
JUDGE_TARGETS = {"faces": {"gender": 0.85, "age": 0.55, "race": 0.7}}  # on real held-out photos
TOKENIZER_TARGETS = {"faces": {"psnr": 26.0, "codebook_usage": 0.8}}
FD_OVER_RECON_TARGET = {"faces": 3.0}  # generated at most this many times the reconstructions' distance
SET_LABELS = {"seen": "seen prompts", "heldout": "held-out combinations", "new_wording": "new wordings"}


def _short(model: str) -> str:
    """A model name with its checkpoint hash cut to 12 digits, as git shortens commits."""
    return re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1", model)


def _bounds(interval: list[float]) -> str:
    return f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def _targets_text(targets: Mapping[str, float]) -> str:
    return ", ".join(f"{key} >= {value}" for key, value in targets.items())


def _per_attribute(figures: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {figures[key]:.2f}" for key in _attribute_keys(figures) if key != "all")


def headlines(card: Mapping[str, Any], metrics: Mapping[str, Any], world: str | None) -> list[Headline]:
    """The scorecard's figures with their 95% intervals, floors and the ``world``'s targets, for the report."""
    rows = []
    alignment = metrics.get("alignment", {})
    targets = ALIGNMENT_TARGETS.get(world or "", {})
    judge = card.get("scored_by_alignment", "CLIP-free judge")
    for name, label in SET_LABELS.items():
        if name not in alignment:
            continue
        generated, floor = alignment[name]["generated"], alignment[name]["random_real_floor"]["all"]
        wanted = targets.get(name, {})
        best = alignment[name]["best_of_n"]["all"]
        ceiling_note = (f"; the tokenizer's ceiling {card['checker_acc_recon_heldout']:.2f}"
                        if name == "heldout" and "checker_acc_recon_heldout" in card else "")
        rows.append(Headline(f"alignment, {label}: all attributes ({_per_attribute(generated)}); best of N {best:.2f}",
                             f"{generated['all']:.2f}", _bounds(generated["all_ci95"]),
                             f"random real images {floor:.3f}{ceiling_note}", _targets_text(wanted),
                             all(generated[k] >= v for k, v in wanted.items()) if wanted else None, judge))
    if "partial" in alignment:
        generated, floor = alignment["partial"]["generated"], alignment["partial"]["random_real_floor"]["named_all"]
        wanted = targets.get("partial", {})
        rows.append(Headline("alignment, partial prompts (named attributes)", f"{generated['named_all']:.2f}",
                             _bounds(generated["named_all_ci95"]), f"random real images {floor:.3f}",
                             _targets_text(wanted),
                             all(generated[k] >= v for k, v in wanted.items()) if wanted else None, judge))
    inception = "fid_inception_eval" in card
    distance, kernel = ("FID (Inception-v3)", "KID") if inception else ("Frechet distance, scoring CLIP's space",
                                                                          "kernel distance, scoring CLIP's space")
    value = card["fid_inception_eval" if inception else "fd_eval_clip"]
    scorer = _short(card.get("scored_by_frechet", ""))
    ratio = FD_OVER_RECON_TARGET.get(world or "")
    rows.append(Headline(f"{distance}, N = {card['fd_n']}", f"{value:.4g}", "one sample set (no interval)",
                         f"real vs real {card['fd_floor_real']:.4g}; reconstructions {card['fd_floor_recon']:.4g}; "
                         f"scrambled codes {card['fd_scrambled']:.4g}",
                         f"<= {ratio} x reconstructions" if ratio else "",
                         value <= ratio * card["fd_floor_recon"] if ratio else None, scorer))
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
                             0.2 <= matched <= 0.45 and centroids >= 0.5, "conditioning CLIP (held-out images)"))
    if "checker" in metrics:
        checker = metrics["checker"]
        real, recon = checker["real_heldout"], checker["reconstructions"]
        wanted = JUDGE_TARGETS.get(world or "", {})
        fresh = f"; fresh renders {card['checker_acc_fresh']:.2f}" if "checker_acc_fresh" in card else ""
        rows.append(Headline(f"the judge's own accuracy on real held-out images ({_per_attribute(real)}); "
                             f"on their reconstructions {recon['all']:.2f} ({_per_attribute(recon)}){fresh}",
                             f"{real['all']:.2f}", _bounds(real["all_ci95"]),
                             "the ceiling for generated images of seen combinations",
                             _targets_text(wanted), all(real[k] >= v for k, v in wanted.items()) if wanted else None,
                             judge))
        if "heldout_pairs" in checker:
            ceiling = checker["heldout_pairs"]["reconstructions"]
            rows.append(Headline("the tokenizer's ceiling on held-out combinations: the judge on reconstructions of "
                                 f"{ceiling['n']} fresh renders of them ({_per_attribute(ceiling)}; the renders "
                                 f"themselves {checker['heldout_pairs']['real']['all']:.2f})",
                                 f"{ceiling['all']:.2f}", _bounds(ceiling["all_ci95"]),
                                 "the held-out alignment of a generator that draws the codes the tokenizer gives "
                                 "these images", "",
                                 None, judge))
    if "tokenizer_psnr" in card:
        wanted = TOKENIZER_TARGETS.get(world or "", {})
        rows.append(Headline("tokenizer: val PSNR (dB) / codebook usage",
                             f"{card['tokenizer_psnr']:.2f} / {card['tokenizer_codebook_usage']:.2f}", "-", "",
                             _targets_text(wanted),
                             all(card[f"tokenizer_{k}"] >= v for k, v in wanted.items()) if wanted else None,
                             "pixels (no model)"))
    return rows
