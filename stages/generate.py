from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.clip.weights import load_encoder
from pipeline.core.device import resolve_device, use_threads
from pipeline.core.params import load_params
from pipeline.diffusion.generate import generate_images, settings_from
from pipeline.diffusion.model import load_model
from pipeline.diffusion.pseudo_text import inference_condition
from pipeline.diffusion.sample_set import write_pngs
from pipeline.tokenizer.model import decode_all, load_vqgan
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    prompt: Annotated[str, typer.Argument(help="The text to draw, e.g. 'a red circle on the left'.")],
    n: Annotated[int, typer.Option("-n", help="Images to generate.", min=1)] = 8,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the PNGs.")] = Path("out"),
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model")] = Path("models/diffusion.pt"),
    tokenizer: Annotated[Path, typer.Option()] = Path("models/tokenizer.pt"),
    clip_dir: Annotated[Path, typer.Option("--clip")] = Path("models/clip"),
) -> None:
    """Generate images for one prompt with the trained model (not a DVC stage)."""
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty; give the text to draw, e.g. 'a red circle on the left'",
                                 param_hint="PROMPT")
    settings = load_params(params)
    use_threads(settings.sample.threads)
    device = resolve_device(settings.sample.device)
    model, schedule, _, conditioning = load_model(model_path, device)
    vqgan = load_vqgan(tokenizer, device)
    text = torch.from_numpy(load_encoder(settings.clip, clip_dir).embed_texts([prompt]))
    embedding = inference_condition(text, conditioning.mode, conditioning.means).to(device)
    images, _ = generate_images(model, schedule, lambda codes: decode_all(vqgan, codes, 256), embedding, n,
                                settings_from(settings.sample, settings.sample.steps), seed)
    out.mkdir(parents=True, exist_ok=True)
    names = write_pngs(out, images)
    typer.echo(f"wrote {len(names)} images for {prompt!r} to {out}/")
