"""The comparison table of `t2i compare`: its columns per world, its floors and its ranking lines."""

from pathlib import Path

from pipeline.evaluate.comparison import comparison_json, comparison_markdown, score_keys


def _card(seen: float, ci: float, **extra: float) -> dict:
    return {"align_seen_all": seen, "ci95_align_seen_all": ci, "align_heldout_all": 0.2, "align_new_wording_all": 0.3,
            "align_partial_named": 0.5, "fd_eval_clip": 0.01, "clipscore_hessel_mean": 0.9,
            "clipscore_hessel_best_of_n": 1.0, "floor_align_seen_all": 0.01, "fd_n": 96, "fd_floor_real": 0.001,
            "fd_floor_recon": 0.002, "fd_scrambled": 0.1, "scored_by_alignment": "judge", **extra}


FIGURES = {"parameters": 1_000_000, "train_steps": 10, "train_images_seen": 640, "train_seconds": 60.0,
           "sampling_images_per_second": 5.0}


def _table(cards: dict[str, dict], world: str) -> dict:
    return comparison_json(cards, {name: FIGURES for name in cards}, 16, world)


def test_the_faces_table_adds_the_held_out_attributes_with_their_floors():
    faces = {"align_gender": 0.8, "ci95_align_gender": 0.1, "floor_align_gender": 0.5, "align_age": 0.6,
             "floor_align_age": 0.3, "align_race": 0.5, "floor_align_race": 0.15}
    table = _table({"vqdiffusion": _card(0.3, 0.04, **faces), "lafite": _card(0.1, 0.03, **faces)}, "faces")
    assert table["world"] == "faces" and score_keys(table)[-3:] == ["align_gender", "align_age", "align_race"]
    markdown = comparison_markdown(table, Path("reports/faces"))
    assert "(faces world)" in markdown and "| align_gender | align_age | align_race |" in markdown
    assert "0.800 +- 0.100" in markdown and "align_gender 0.500, align_age 0.300, align_race 0.150" in markdown
    assert "reports/faces/comparison.json" in markdown and "reports/faces/comparison/<generator>.png" in markdown


def test_the_shapes_table_has_no_attribute_columns_and_ranks_by_the_intervals():
    table = _table({"vqdiffusion": _card(0.9, 0.02), "lafite": _card(0.5, 0.04), "clipgen": _card(0.91, 0.02)},
                   "shapes")
    assert score_keys(table)[-1] == "clipscore_hessel_best_of_n"
    markdown = comparison_markdown(table)
    lines = [line for line in markdown.splitlines() if line.startswith("- **")]
    assert len(lines) == 3
    assert lines[0].startswith("- **VQ-Diffusion (CLIP-VQDiffusion)**: cannot tell it from CLIP-GEN")
    assert lines[1].startswith("- **LAFITE (StyleGAN2)**: agrees")  # 0.5 +- 0.04 is below 0.9 +- 0.02
    assert "| +0.890 |" in markdown  # seen_all over the 0.01 floor
