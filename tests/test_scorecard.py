"""The flat scorecard and the ablation table, from constructed metrics."""

import pytest

from pipeline.evaluate.scorecard import headlines, scorecard
from stages.ablation import ablation_markdown


def accuracy(value: float, keys=("colour", "shape", "size", "position", "all")) -> dict:
    return {**{key: value for key in keys}, **{f"{key}_ci95": [value - 0.02, value + 0.04] for key in keys}}


def alignment_block(value: float) -> dict:
    return {"generated": accuracy(value), "best_of_n": accuracy(value + 0.1),
            "random_real_floor": {key: 0.006 for key in ("colour", "shape", "size", "position", "all")}}


METRICS = {
    "frechet": {name: {"fd_clip": value, "kd_clip_mean": value / 10, "kd_clip_std": 0.001, "n_generated": 1000}
                for name, value in (("samples", 0.3), ("real_vs_real", 0.01), ("reconstructions", 0.05),
                                    ("scrambled_token_baseline", 0.9))},
    "clipscore": {"clipscore_hessel_mean": 1.0, "clipscore_hessel_best_of_n": 1.2},
    "alignment": {"seen": alignment_block(0.8), "heldout": alignment_block(0.5),
                  "new_wording": alignment_block(0.7),
                  "partial": {"generated": {"named_all": 0.85, "named_all_ci95": [0.8, 0.9]},
                              "random_real_floor": {"named_all": 0.16}}},
    "checker": {"fresh_renders": {"all": 0.99}, "real_heldout": accuracy(0.98), "reconstructions": accuracy(0.95)},
}
CLIP = {"gap": {"matched_cosine": 0.4, "centroid_distance": 0.9}}


def test_scorecard_has_the_issues_flat_keys():
    card = scorecard(METRICS, CLIP, "c3-0.5")
    wanted = {f"align_{s}_{a}" for s in ("seen", "heldout") for a in ("colour", "shape", "size", "position", "all")}
    wanted |= {"align_new_wording_all", "align_partial_named", "ci95_align_seen_all", "ci95_align_heldout_all",
               "clip_matched_cosine", "clip_centroid_distance", "fd_eval_clip", "kd_eval_clip", "kd_eval_clip_std",
               "fd_floor_real", "fd_floor_recon", "checker_acc_fresh", "checker_acc_recon", "checker_acc_real",
               "align_seen_best_of_n_all", "align_all", "align_colour", "judge_acc_colour", "pseudo_text"}
    assert wanted <= set(card)
    assert card["align_seen_best_of_n_all"] == pytest.approx(0.9) and card["align_all"] == 0.5
    assert all(not isinstance(v, (dict, list)) for v in card.values())
    assert card["ci95_align_seen_all"] == pytest.approx(0.03) and card["fd_floor_recon"] == 0.05
    assert card["pseudo_text"] == "c3-0.5" and card["align_partial_named"] == 0.85


def test_scorecard_names_fid_and_kid_only_when_inception_scored_them():
    frechet = {name: {"fid_inception": value, "kid_inception_mean": value / 10, "kid_inception_std": 0.001,
                      "n_generated": 1000} for name, value in (("samples", 30.0), ("real_vs_real", 1.0),
                                                               ("reconstructions", 5.0),
                                                               ("scrambled_token_baseline", 90.0))}
    scored_by = {"frechet": "torch-fidelity inception-v3-compat weights/inception.pth", "clipscore": "scorer",
                 "alignment": "checker"}
    card = scorecard({**METRICS, "frechet": frechet, "scored_by": scored_by}, CLIP, "c3-0.5")
    assert (card["fid_inception_eval"], card["kid_inception_eval"], card["kid_inception_eval_std"]) == (30.0, 3.0,
                                                                                                         0.001)
    assert card["fd_floor_real"] == 1.0 and card["scored_by_frechet"].startswith("torch-fidelity inception")
    assert not any(key.startswith(("fd_eval", "kd_eval")) for key in card)
    clip_card = scorecard(METRICS, CLIP, "c3-0.5")
    assert not any(key.startswith(("fid", "kid")) for key in clip_card) and clip_card["kd_eval_clip"] == 0.03


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


def test_headlines_carry_interval_floor_target_and_scorer():
    metrics = {**METRICS, "scored_by": {"frechet": "tiny sha256:ab (scorer)", "clipscore": "tiny sha256:ab (scorer)",
                                        "alignment": "checker"}}
    metrics["scored_by"]["alignment"] = "the world's CLIP-free rule checker"
    rows = {row.figure.split(":")[0]: row for row in headlines(scorecard(metrics, CLIP, "c3-0.5"), metrics, "shapes")}
    seen = rows["alignment, seen prompts"]
    assert (seen.value, seen.interval, seen.floor) == ("0.80", "[0.78, 0.84]", "random real images 0.006")
    assert "colour 0.80" in seen.figure and "best of N 0.90" in seen.figure
    assert seen.met is False  # colour 0.8 < 0.9
    heldout = rows["alignment, held-out combinations"]
    assert (heldout.target, heldout.met, heldout.scored_by) == ("all >= 0.5", True,
                                                                "the world's CLIP-free rule checker")
    assert rows["alignment, new wordings"].met is None
    partial = rows["alignment, partial prompts (named attributes)"]
    assert (partial.value, partial.floor, partial.met) == ("0.85", "random real images 0.160", True)
    judge = rows["the judge's own accuracy on real held-out images (colour 0.98, shape 0.98, size 0.98, position 0.98); "
                 "on their reconstructions 0.95 (colour 0.95, shape 0.95, size 0.95, position 0.95); fresh renders "
                 "0.99"]
    assert judge.value == "0.98" and judge.met is None
    frechet = rows["Frechet distance, scoring CLIP's space, N = 1000"]
    assert frechet.scored_by == "tiny sha256:ab (scorer)" and "real vs real 0.01" in frechet.floor
    assert rows["conditioning CLIP's gap"].met is True


def test_the_faces_world_headlines_check_its_own_targets():
    faces = ("gender", "age", "race", "all")
    block = {"generated": accuracy(0.85, faces), "best_of_n": accuracy(0.9, faces),
             "random_real_floor": {key: 0.3 for key in faces}}
    metrics = {**METRICS, "alignment": {"seen": block, "heldout": block},
               "checker": {"real_heldout": accuracy(0.9, faces), "reconstructions": accuracy(0.8, faces)},
               "scored_by": {"frechet": "s", "clipscore": "s", "alignment": "the judge CNN models/judge (CLIP-free)"}}
    card = scorecard(metrics, CLIP, "c3-0.5", {"psnr": 26.5, "codebook_usage": 0.9})
    assert {"align_gender", "align_age", "align_race", "align_all", "judge_acc_gender", "judge_acc_age",
            "judge_acc_race", "tokenizer_psnr"} <= set(card)
    rows = {row.figure.split(" (")[0].split(":")[0]: row for row in headlines(card, metrics, "faces")}
    assert rows["alignment, held-out combinations"].met is True  # 0.85 >= 0.8, 0.4, 0.5
    assert rows["alignment, seen prompts"].met is None
    assert rows["the judge's own accuracy on real held-out images"].met is True
    assert rows["tokenizer"].met is True and rows["tokenizer"].target == "psnr >= 26.0, codebook_usage >= 0.8"
    frechet = next(row for name, row in rows.items() if name.startswith("Frechet"))
    assert frechet.met is False  # 0.3 > 3 x 0.05


def test_the_tokenizers_heldout_ceiling_is_a_flat_key_and_a_headline():
    ceiling = {"real": accuracy(1.0), "reconstructions": {**accuracy(0.4), "n": 2000}, "seed": 7}
    metrics = {**METRICS, "checker": {**METRICS["checker"], "heldout_pairs": ceiling}}
    card = scorecard(metrics, CLIP, "c3-0.5")
    assert card["checker_acc_recon_heldout"] == 0.4 and card["ci95_checker_acc_recon_heldout"] == pytest.approx(0.03)
    rows = {row.figure.split(":")[0]: row for row in headlines(card, metrics, "shapes")}
    assert rows["alignment, held-out combinations"].floor == "random real images 0.006; the tokenizer's ceiling 0.40"
    assert rows["alignment, seen prompts"].floor == "random real images 0.006"
    row = rows["the tokenizer's ceiling on held-out combinations"]
    assert (row.value, row.interval) == ("0.40", "[0.38, 0.44]") and "2000 fresh renders" in row.figure
    assert "checker_acc_recon_heldout" not in scorecard(METRICS, CLIP, "c3-0.5")
