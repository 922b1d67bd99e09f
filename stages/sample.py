from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.device import resolve_device, use_threads
from pipeline.core.params import load_params
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.generator.pseudo_text import inference_condition, setting_name
from pipeline.generator.load import load_generator
from pipeline.generator.sample_set import sample_prompt_set
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="The trained generator (train stage).")] = Path(
        "models/generator.pt"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer (decodes code grids).")] = Path(
        "models/tokenizer.pt"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage).")] = Path(
        "data/prompt_embeddings.parquet"),
    out: Annotated[Path, typer.Option(help="Sample PNGs, index.parquet and contact_sheet.png.")] = Path("data/samples"),
    report: Annotated[Path, typer.Option(help="Sampling speed and settings.")] = Path("reports/sample.json"),
) -> None:
    """Sample images for every evaluation prompt from its CLIP text embedding, with whichever generator
    the train stage trained."""
    settings = load_params(params)
    sample = settings.sample
    use_threads(sample.threads)
    device = resolve_device(sample.device)
    model = load_generator(model_path, tokenizer, device)
    conditioning = model.conditioning
    frame, text_embeddings = read_prompt_embeddings(prompts)
    conditions = inference_condition(torch.from_numpy(text_embeddings.copy()), conditioning.mode, conditioning.means)
    with atomic_dir(out) as tmp:
        timing = sample_prompt_set(model, frame, conditions, sample, tmp)
    write_json(report, {"sampler": {"generator": model.kind, "parameters": model.num_params(),
                                    "guidance": sample.guidance if model.uses_guidance else None,
                                    "truncation": sample.truncation, "top_k": sample.top_k,
                                    "purity": sample.purity, "samples_per_prompt": sample.samples_per_prompt,
                                    "heldout_samples_per_prompt": sample.heldout_samples_per_prompt,
                                    "conditioning": setting_name(conditioning.mode, conditioning.scale)},
                        **timing})
