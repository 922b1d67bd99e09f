from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.device import resolve_device, use_threads
from pipeline.core.params import load_params
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.diffusion.model import load_model
from pipeline.diffusion.pseudo_text import inference_condition, setting_name
from pipeline.diffusion.sample_set import sample_prompt_set
from pipeline.tokenizer.model import decode_all, load_vqgan
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="The trained diffusion model.")] = Path(
        "models/diffusion.pt"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage).")] = Path(
        "data/prompt_embeddings.parquet"),
    out: Annotated[Path, typer.Option(help="Sample PNGs, index.parquet and contact_sheet.png.")] = Path("data/samples"),
    report: Annotated[Path, typer.Option(help="Sampling speed and settings.")] = Path("reports/sample.json"),
) -> None:
    """Sample images for every evaluation prompt from its CLIP text embedding."""
    settings = load_params(params)
    sample = settings.sample
    use_threads(sample.threads)
    device = resolve_device(sample.device)
    model, schedule, _, conditioning = load_model(model_path, device)
    vqgan = load_vqgan(tokenizer, device)
    frame, text_embeddings = read_prompt_embeddings(prompts)
    conditions = inference_condition(torch.from_numpy(text_embeddings.copy()), conditioning.mode, conditioning.means)
    with atomic_dir(out) as tmp:
        timing = sample_prompt_set(model, schedule, lambda codes: decode_all(vqgan, codes, 256), frame,
                                   conditions, sample, tmp)
    write_json(report, {"sampler": {"guidance": sample.guidance, "truncation": sample.truncation,
                                    "purity": sample.purity, "samples_per_prompt": sample.samples_per_prompt,
                                    "conditioning": setting_name(conditioning.mode, conditioning.scale)},
                        **timing})
