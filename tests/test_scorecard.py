"""The flat scorecard and the ablation table, from constructed metrics."""

import pytest

from pipeline.evaluate.scorecard import scorecard
from stages.ablation import ablation_markdown


def alignment_block(value: float) -> dict:
    generated = {key: value for key in ("colour", "shape", "size", "position", "all")}
    return {"generated": {**generated, "all_ci95": [value - 0.02, value + 0.04]},
            "random_real_floor": {"all": 0.006}}


METRICS = {
    "frechet": {name: {"fd_clip": value, "n_generated": 1000}
                for name, value in (("samples", 0.3), ("real_vs_real", 0.01), ("reconstructions", 0.05),
                                    ("scrambled_token_baseline", 0.9))},
    "clipscore": {"clipscore_hessel_mean": 1.0, "clipscore_hessel_best_of_n": 1.2},
    "alignment": {"seen": alignment_block(0.8), "heldout": alignment_block(0.5),
                  "new_wording": alignment_block(0.7),
                  "partial": {"generated": {"named_all": 0.85, "named_all_ci95": [0.8, 0.9]}}},
    "checker": {"fresh_renders": {"all": 0.99}, "reconstructions": {"all": 0.95}},
}
CLIP = {"gap": {"matched_cosine": 0.4, "centroid_distance": 0.9}}


def test_scorecard_has_the_issues_flat_keys():
    card = scorecard(METRICS, CLIP, "c3-0.5")
    wanted = {f"align_{s}_{a}" for s in ("seen", "heldout") for a in ("colour", "shape", "size", "position", "all")}
    wanted |= {"align_new_wording_all", "align_partial_named", "ci95_align_seen_all", "ci95_align_heldout_all",
               "clip_matched_cosine", "clip_centroid_distance", "fd_eval_clip", "fd_floor_real", "fd_floor_recon",
               "checker_acc_fresh", "checker_acc_recon", "pseudo_text"}
    assert wanted <= set(card)
    assert all(not isinstance(v, (dict, list)) for v in card.values())
    assert card["ci95_align_seen_all"] == pytest.approx(0.03) and card["fd_floor_recon"] == 0.05
    assert card["pseudo_text"] == "c3-0.5" and card["align_partial_named"] == 0.85


def test_scorecard_leaves_out_what_a_run_did_not_measure():
    metrics = {key: value for key, value in METRICS.items() if key not in ("alignment", "checker")}
    card = scorecard(metrics, {"pretrained": "openai"}, "none")
    assert not any(key.startswith(("align_", "checker_", "clip_")) for key in card)
    assert card["fd_eval_clip"] == 0.3


def test_ablation_table_says_its_steps_and_the_gain_over_none():
    cards = {"none": scorecard(METRICS, CLIP, "none"), "c3-0.5": {**scorecard(METRICS, CLIP, "c3-0.5"),
                                                                 "align_seen_all": 0.95}}
    table = ablation_markdown(cards, steps=1000, samples=16)
    assert "`t2i ablation --steps 1000 --samples 16`" in table and "16 images per evaluation prompt" in table
    assert "| c3-0.5 | 0.950 +- 0.030 |" in table and "+0.150 |" in table
