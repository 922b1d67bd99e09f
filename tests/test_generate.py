"""`t2i generate`: several prompts or a prompts file in, single PNGs and a labelled grid out;
clear errors for empty prompts and missing files; the same seed gives the same images."""

from __future__ import annotations

import open_clip
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.clip.train import save_clip
from pipeline.clip.weights import TRAINED_CLIP
from pipeline.diffusion.model import Conditioning, save_model
from pipeline.diffusion.prompt_grid import PAD, labelled_grid, parse_prompts
from pipeline.generator.pseudo_text import ConditionMeans
from pipeline.diffusion.transformer import Transformer, TransformerConfig
from pipeline.tokenizer.model import VQGAN, save_vqgan
from stages.cli import app

CLIP_DIM = 128  # shapes-clip-tiny's embedding
PROMPTS = ["a red circle", "a blue square on the left"]

pytestmark = pytest.mark.usefixtures("one_thread")


def said(result) -> str:
    """The command's output on one line, without the box an error is drawn in."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.fixture
def models(tmp_path):
    """Untrained but real model files of each kind generate loads, tiny: 16 px images of 4x4 codes."""
    torch.manual_seed(0)
    root = tmp_path / "models"
    save_vqgan(VQGAN(n_codes=16, code_dim=8, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                     resolution=16), root / "tokenizer.pt")
    save_clip(open_clip.create_model("shapes-clip-tiny"), root / "clip" / TRAINED_CLIP)
    config = TransformerConfig(n_codes=16, grid_h=4, grid_w=4, steps=10, clip_dim=CLIP_DIM, depth=1, width=32,
                               heads=2)
    means = ConditionMeans(image=torch.randn(CLIP_DIM), text=torch.randn(CLIP_DIM))
    save_model(root / "diffusion.pt", Transformer(config), config, [0.99999, 9.0e-6], [9.0e-6, 0.99999], {},
               Conditioning("c3", 0.5, means))
    return root


def generate(args, models, params_file):
    params = params_file({"sample.device": "cpu", "sample.threads": 1, "sample.steps": 5, "clip.device": "cpu"})
    return CliRunner().invoke(app, ["generate", *args, "--params", str(params), "--model", str(models / "diffusion.pt"),
                                    "--tokenizer", str(models / "tokenizer.pt"), "--clip", str(models / "clip")],
                            env={"COLUMNS": "1000"})  # an error box as wide as its message: no wrapped paths


def test_grid_has_a_row_per_prompt_and_upscales_small_images():
    red, blue = Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")
    grid = labelled_grid([("a red circle", [red, red, red]), ("a much longer prompt about a blue square", [blue])])
    cell = 64  # 16 px upscaled 4x
    strip = grid.width - 3 * (cell + PAD)
    assert grid.height == 2 * (cell + PAD) + PAD and strip > 100  # room for the longer label
    assert grid.getpixel((strip + 2 * (cell + PAD) + cell - 1, PAD)) == (255, 0, 0)  # third image, top row
    assert grid.getpixel((strip + cell // 2, PAD + cell + PAD + cell // 2)) == (0, 0, 255)
    assert grid.getpixel((strip + cell + PAD + 1, PAD + cell + PAD + 1)) == (255, 255, 255)  # short row: blank
    label = grid.crop((0, PAD, strip, PAD + cell))
    assert label.convert("L").getextrema()[0] < 128  # the label is drawn
    large = labelled_grid([("x", [Image.new("RGB", (100, 80))])])
    assert large.height == 80 + 2 * PAD  # already readable: not scaled
    with pytest.raises(ValueError):
        labelled_grid([("no images", [])])


def test_prompts_file_skips_blank_lines_and_comments():
    assert parse_prompts("# shapes\na red circle\n\n   \n  a blue square  \n#  a green one\n") == [
        "a red circle", "a blue square"]


def test_empty_prompt_no_prompt_and_empty_prompts_file_are_clear_errors(tmp_path, models, params_file):
    result = generate(["a red circle", "  "], models, params_file)
    assert result.exit_code == 2 and "PROMPTS" in said(result) and "a prompt is empty" in said(result)
    result = generate([], models, params_file)
    assert result.exit_code == 2 and "give at least one prompt" in said(result)
    result = generate(["--prompts-file", str(tmp_path / "missing.txt")], models, params_file)
    assert result.exit_code == 2 and "--prompts-file" in said(result) and "missing.txt" in said(result)
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    result = generate(["--prompts-file", str(tmp_path / "empty.txt")], models, params_file)
    assert result.exit_code == 2 and "empty.txt holds no prompts" in said(result)


@pytest.mark.parametrize("file, option, stage", [("diffusion.pt", "--model", "train"),
                                                  ("tokenizer.pt", "--tokenizer", "tokenizer"),
                                                  (f"clip/{TRAINED_CLIP}", "--clip", "clip")])
def test_a_missing_model_file_names_the_stage_that_makes_it(models, params_file, file, option, stage):
    (models / file).unlink()
    result = generate(["a red circle"], models, params_file)
    assert result.exit_code == 2, result.output
    assert option in said(result) and f"{models / file} does not exist; make it with `dvc repro {stage}`" in said(
        result)


def test_several_prompts_give_single_images_and_a_labelled_grid_again_the_same(tmp_path, models, params_file):
    (tmp_path / "prompts.txt").write_text("# more\na green triangle at the top\n")
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = generate([*PROMPTS, "--prompts-file", str(tmp_path / "prompts.txt"), "-n", "3", "-o", str(out)],
                          models, params_file)
        assert result.exit_code == 0, result.output
        assert f"grid: {out / 'grid.png'}" in result.output and f"to {out}/" in result.output
        assert "p01_s*.png: 'a blue square on the left'" in result.output
        runs.append({p.name: p.read_bytes() for p in out.iterdir()})
    names = {f"p{p:02d}_s{n:02d}.png" for p in range(3) for n in range(3)} | {"grid.png"}
    assert set(runs[0]) == names and runs[0] == runs[1]  # the same seed and prompts: the same files
    assert runs[0]["p00_s00.png"] != runs[0]["p01_s00.png"]  # each prompt its own generator stream
    single = Image.open(tmp_path / "a" / "p02_s01.png")
    grid = Image.open(tmp_path / "a" / "grid.png")
    assert single.size == (16, 16) and grid.height == 3 * (64 + PAD) + PAD
