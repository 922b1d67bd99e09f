from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.clip.weights import TRAINED_CLIP, load_encoder
from pipeline.core.device import resolve_device, use_threads
from pipeline.core.params import load_params
from pipeline.generator.sampling import generate_images, settings_from
from pipeline.generator.load import load_generator
from pipeline.diffusion.prompt_grid import parse_prompts, write_generated
from pipeline.generator.pseudo_text import inference_condition
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    prompts: Annotated[list[str] | None, typer.Argument(
        metavar="PROMPTS", help="The texts to draw, e.g. 'a red circle on the left' 'a blue square'.",
        show_default=False)] = None,
    prompts_file: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="More prompts, one a line (blank lines and # comments skipped).")] = None,
    n: Annotated[int, typer.Option("-n", help="Images per prompt.", min=1)] = 8,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the PNGs and grid.png.")] = Path("out"),
    seed: Annotated[int, typer.Option(help="Sampling seed; each prompt draws from its own stream of it.")] = 0,
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="The train stage's model.")] = Path(
        "models/generator.pt"),
    tokenizer: Annotated[Path, typer.Option(help="The tokenizer stage's model.")] = Path("models/tokenizer.pt"),
    clip_dir: Annotated[Path, typer.Option("--clip", help="The clip stage's folder (unless clip.pretrained).")] = Path(
        "models/clip"),
) -> None:
    """Generate images for prompts with the trained model, and a grid labelled with them (not a DVC stage)."""
    texts = _prompts(prompts or [], prompts_file)
    settings = load_params(params)
    needed = [(model_path, "--model", "train"), (tokenizer, "--tokenizer", "tokenizer")]
    if settings.clip.pretrained is None:
        needed.append((clip_dir / TRAINED_CLIP, "--clip", "clip"))
    for path, option, stage in needed:
        if not path.is_file():
            raise typer.BadParameter(f"{path} does not exist; make it with `dvc repro {stage}`", param_hint=option)
    use_threads(settings.sample.threads)
    device = resolve_device(settings.sample.device)
    model = load_generator(model_path, tokenizer, device)
    text = torch.from_numpy(load_encoder(settings.clip, clip_dir).embed_texts(texts))
    embeddings = inference_condition(text, model.conditioning.mode, model.conditioning.means)
    images, _ = generate_images(model, embeddings, n, settings_from(settings.sample, settings.sample.steps), seed)
    patterns, grid = write_generated(out, texts, images)
    typer.echo(f"wrote {n} images for each of {len(texts)} prompts to {out}/")
    for pattern, text in zip(patterns, texts):
        typer.echo(f"  {pattern}: {text!r}")
    typer.echo(f"grid: {grid}")


def _prompts(given: list[str], file: Path | None) -> list[str]:
    """The prompts on the command line, then the file's; an empty one or none at all is an error."""
    for text in given:
        if not text.strip():
            raise typer.BadParameter("a prompt is empty; give the text to draw, e.g. 'a red circle on the left'",
                                     param_hint="PROMPTS")
    texts = [text.strip() for text in given]
    if file is not None:
        from_file = parse_prompts(file.read_text(encoding="utf-8"))
        if not from_file:
            raise typer.BadParameter(f"{file} holds no prompts (blank lines and # comments are skipped)",
                                     param_hint="--prompts-file")
        texts += from_file
    if not texts:
        raise typer.BadParameter("give at least one prompt, e.g. t2i generate 'a red circle', or --prompts-file",
                                 param_hint="PROMPTS")
    return texts
