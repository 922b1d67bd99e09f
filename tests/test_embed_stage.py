"""The embed stage end to end on a local CLIP checkpoint file: deterministic bytes, unit rows."""

from __future__ import annotations

import numpy as np
import open_clip
import torch
from typer.testing import CliRunner

from pipeline.clip.train import save_clip
from pipeline.data.vectors import read_prompt_embeddings, read_vectors
from stages.cli import app
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import held_out_pairs
from tests.test_cache import write_ingest


def test_same_inputs_give_the_same_cache_bytes(tmp_path, params_file, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)  # a repository whose weights/ folder holds the CLIP file
    (tmp_path / "weights").mkdir()
    save_clip(open_clip.create_model("shapes-clip-tiny"), tmp_path / "weights/clip.pt")
    ingest = write_ingest(tmp_path / "ingest")
    prompts_csv = tmp_path / "prompts.csv"
    shapes_prompts(held_out_pairs(3, 0)).to_csv(prompts_csv, index=False)
    params = params_file({"clip.pretrained": "weights/clip.pt", "clip.batch_size": 5, "clip.device": "cpu",
                          "embed.prompts": str(prompts_csv)})
    runs = []
    for run in ("a", "b"):
        out, prompts = tmp_path / run / "embeddings", tmp_path / run / "prompts.parquet"
        result = CliRunner().invoke(app, ["embed", "--params", str(params), "--ingest", str(ingest),
                                          "--clip", str(tmp_path / "unused"), "--out", str(out),
                                          "--prompts-out", str(prompts)])
        assert result.exit_code == 0, result.output
        runs.append({p.relative_to(tmp_path / run): p.read_bytes() for p in (tmp_path / run).rglob("*")
                     if p.is_file()})
    assert runs[0] == runs[1] and len(runs[0]) == 4  # three cache shards and the prompts

    cache = read_vectors(tmp_path / "a/embeddings", "embedding")
    assert len(cache.ids) == 12 and cache.metadata["model"] == "shapes-clip-tiny"
    np.testing.assert_allclose(np.linalg.norm(cache.vectors, axis=1), 1, atol=1e-5)
    frame, text = read_prompt_embeddings(tmp_path / "a/prompts.parquet")
    assert len(frame) == len(text) == 96 and {"prompt", "colour", "shape"} <= set(frame.columns)
