"""The trade-off sweep: its points, each setting drawn once, and the stage end to end on tiny models."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import open_clip
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.clip.train import save_clip
from pipeline.core.errors import UserError
from pipeline.data.shards import SHARD_PATTERN
from pipeline.data.vectors import write_prompt_embeddings
from pipeline.diffusion.model import Conditioning, save_model
from pipeline.diffusion.transformer import Transformer, TransformerConfig
from pipeline.evaluate.tradeoff import (COLUMNS, SweepPoint, checker_world, fd_count, prompt_set_rows, run_sweep,
                                        sweep_points)
from pipeline.judge.checker import RULES
from pipeline.tokenizer.model import VQGAN, save_vqgan
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import held_out_pairs, render_set
from stages.cli import app


def test_two_lines_through_the_sample_setting():
    points = sweep_points([1.0, 1.5, 2.0, 3.0, 5.0], [0.8, 0.9, 1.0], at_guidance=2.0, at_truncation=0.9)
    assert points[:5] == [SweepPoint("guidance", g, 0.9) for g in (1.0, 1.5, 2.0, 3.0, 5.0)]
    assert points[5:] == [SweepPoint("truncation", 2.0, t) for t in (0.8, 0.9, 1.0)]
    assert len({(p.guidance, p.truncation) for p in points}) == 7  # (2.0, 0.9) lies on both lines


def test_repeated_values_are_one_point_and_a_line_may_be_empty():
    assert sweep_points([3.0, 1.0, 3.0], [], at_guidance=2.0, at_truncation=0.9) == [
        SweepPoint("guidance", 3.0, 0.9), SweepPoint("guidance", 1.0, 0.9)]
    with pytest.raises(UserError, match="tradeoff.guidance and tradeoff.truncation are both empty"):
        sweep_points([], [], at_guidance=2.0, at_truncation=0.9)


def test_a_setting_on_both_lines_is_drawn_and_scored_once():
    drawn = []

    def draw(guidance, truncation):
        drawn.append((guidance, truncation))
        return torch.zeros(3, 2, 3, 4, 4, dtype=torch.uint8)

    points = sweep_points([1.0, 2.0], [0.9, 1.0], at_guidance=2.0, at_truncation=0.9)
    rows, timing = run_sweep(points, draw, lambda images: {"fd_scorer_clip": float(len(drawn)), "n": 6})
    assert drawn == [(1.0, 0.9), (2.0, 0.9), (2.0, 1.0)]
    assert [(r["sweep"], r["guidance"], r["truncation"], r["fd_scorer_clip"]) for r in rows] == [
        ("guidance", 1.0, 0.9, 1.0), ("guidance", 2.0, 0.9, 2.0), ("truncation", 2.0, 0.9, 2.0),
        ("truncation", 2.0, 1.0, 3.0)]
    assert set(rows[0]) <= set(COLUMNS)
    assert timing["settings_sampled"] == 3 and timing["images"] == 18


def test_fd_n_is_every_sample_unless_given_and_never_more():
    assert fd_count(None, 180) == 180 and fd_count(100, 180) == 100
    with pytest.raises(UserError, match="tradeoff.fd_images = 200"):
        fd_count(200, 180)


def test_prompt_sets_are_picked_by_name_or_used_whole():
    prompts = shapes_prompts(held_out_pairs(3, 0))
    seen = prompt_set_rows(prompts, "seen")
    assert seen.sum() == 30 and (prompts[seen]["split"] == "seen").all() and (prompts[seen]["set"] == "canonical").all()
    assert prompt_set_rows(prompts[["prompt"]], "heldout").all()  # a plain prompts file: all of it
    with pytest.raises(UserError, match="tradeoff.prompt_set = 'heldout'"):
        prompt_set_rows(prompts[~prompt_set_rows(prompts, "heldout")], "heldout")


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def tiny_run(tmp_path, params_file, monkeypatch):
    """Untrained tiny models, 48 rendered held-out images and the shapes prompts: the stage's inputs."""
    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)  # a repository whose weights/ folder holds the scoring CLIP
    (tmp_path / "weights").mkdir()
    save_clip(open_clip.create_model("shapes-clip-tiny"), tmp_path / "weights/scorer.pt")
    pixels, labels = render_set(seed=5, start=0, count=48, resolution=32)
    (tmp_path / "ingest").mkdir()
    pq.write_table(pa.table({"id": [f"{i:016x}" for i in range(48)], "split": ["val"] * 48,
                             "image": pa.array([_png(p) for p in pixels], pa.binary()),
                             **pd.DataFrame(labels)[["shape", "colour", "size", "position"]].to_dict("list")}),
                   tmp_path / "ingest" / SHARD_PATTERN.format(0))
    prompts = shapes_prompts(held_out_pairs(3, 0))
    text = np.random.default_rng(0).normal(size=(len(prompts), 8)).astype(np.float32)
    write_prompt_embeddings(tmp_path / "prompts.parquet", prompts, text / np.linalg.norm(text, axis=1, keepdims=True),
                            {})
    vqgan = VQGAN(16, 8, 8, [1, 2, 2], 1, [], 32, norm="none")
    save_vqgan(vqgan, tmp_path / "tokenizer.pt")
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / RULES).write_text("shapes\n")  # the judge stage's marker: the rule checker scores
    config = TransformerConfig(n_codes=16, grid_h=vqgan.grid, grid_w=vqgan.grid, steps=10, clip_dim=8, depth=1,
                               width=32, heads=2)
    save_model(tmp_path / "diffusion.pt", Transformer(config), config, [0.99999, 9.0e-6], [9.0e-6, 0.99999], {},
               Conditioning("none", 0.0, None))
    settings = {"scorer.pretrained": "weights/scorer.pt", "scorer.device": "cpu", "sample.steps": 3,
                "tradeoff.guidance": [1.0, 2.0], "tradeoff.truncation": [0.9, 1.0],
                "tradeoff.prompt_set": "new_wording", "tradeoff.samples_per_prompt": 2, "tradeoff.device": "cpu",
                "tradeoff.threads": 1}

    def run(name: str, **overrides):
        params = params_file({**settings, **{key.replace("__", "."): value for key, value in overrides.items()}})
        return CliRunner().invoke(app, [
            "tradeoff", "--params", str(params), "--model", "diffusion.pt", "--tokenizer", "tokenizer.pt",
            "--prompts", "prompts.parquet", "--ingest", "ingest", "--scorer", "unused", "--judge", "judge", "--out", f"{name}.csv",
            "--report", f"{name}.json"])

    return run


def test_the_stage_writes_the_curve_and_its_floor_reproducibly(tiny_run, tmp_path):
    curves = []
    for run in ("a", "b"):
        result = tiny_run(run)
        assert result.exit_code == 0, result.output
        curves.append((tmp_path / f"{run}.csv").read_text())
    assert curves[0] == curves[1]  # the same seeds, the same figures
    rows = list(csv.DictReader(io.StringIO(curves[0])))
    assert list(rows[0]) == COLUMNS
    assert [(r["sweep"], float(r["guidance"]), float(r["truncation"])) for r in rows] == [
        ("guidance", 1.0, 0.9), ("guidance", 2.0, 0.9), ("truncation", 2.0, 0.9), ("truncation", 2.0, 1.0)]
    for row in rows:
        assert int(row["n"]) == 24 and float(row["fd_scorer_clip"]) >= 0  # 12 new-wording prompts x 2
        assert 0 <= float(row["align_low"]) <= float(row["align_all"]) <= float(row["align_high"]) <= 1
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["fd_n"] == 24 and report["fd_floor_real"] >= 0 and report["prompts"] == 12
    assert report["scored_by"]["frechet"].startswith("shapes-clip-tiny") and report["timing"]["settings_sampled"] == 3


def test_too_few_held_out_images_is_one_clear_error_before_sampling(tiny_run, tmp_path):
    result = tiny_run("c", tradeoff__samples_per_prompt=3)  # N = 36: the 48 val images do not hold 2 N
    assert result.exit_code == 1 and "need 2 x 36 held-out (val) images" in result.output
    assert "tradeoff.fd_images" in result.output and not (tmp_path / "c.csv").exists()
    assert tiny_run("d", tradeoff__samples_per_prompt=3, tradeoff__fd_images=20).exit_code == 0


def test_alignment_is_scored_only_where_a_checker_reads_the_prompts_labels():
    prompts = shapes_prompts(held_out_pairs(3, 0))
    assert checker_world(["id", "image", "split", "shape", "colour", "size", "position"], prompts.columns).name == \
        "shapes"
    assert checker_world(["id", "image", "split"], prompts.columns) is None  # photos: no world
    assert checker_world(["id", "image", "split", "shape", "colour", "size", "position"], ["prompt"]) is None
