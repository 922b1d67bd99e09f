import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from pipeline.atomic import atomic_dir, write_json
from pipeline.device import resolve_device, use_threads
from pipeline.diffusion_train import load_model
from pipeline.embed import load_encoder, read_prompt_embeddings
from pipeline.generate import FULL_T, contact_sheet, generate_images, rank_by_cosine, settings_from, write_pngs
from pipeline.params import load_params
from pipeline.tokenizer_train import decode_all
from pipeline.vqgan import load_vqgan
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="The trained diffusion model.")] = Path(
        "models/diffusion.pt"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    clip_dir: Annotated[Path, typer.Option("--clip", help="The clip stage's output.")] = Path("models/clip"),
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
    model, schedule, _ = load_model(model_path, device)
    vqgan = load_vqgan(tokenizer, device)
    encoder = load_encoder(settings.clip, clip_dir)
    frame, text_embeddings = read_prompt_embeddings(prompts)
    conditions = torch.tensor(text_embeddings, device=device)  # a copy: the Arrow view is read-only

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return decode_all(vqgan, codes, 256)

    runs = {"fast": (sample.steps, len(frame)), FULL_T: (None, min(sample.full_steps_prompts, len(frame)))}
    timing = {}
    with atomic_dir(out) as tmp:
        for name, (steps, count) in runs.items():
            if count == 0:
                continue
            start = time.perf_counter()
            images, seeds = generate_images(model, schedule, decode, conditions[:count], sample.samples_per_prompt,
                                            settings_from(sample, steps), sample.seed, desc=f"sample {name}")
            seconds = time.perf_counter() - start
            timing[name] = {"steps": steps or schedule.steps, "images": images.shape[0] * images.shape[1],
                            "seconds": round(seconds, 2),
                            "images_per_second": round(images.shape[0] * images.shape[1] / seconds, 3)}
            folder = tmp if name == "fast" else tmp / FULL_T
            folder.mkdir(exist_ok=True)
            flat = images.flatten(0, 1)
            cosine = np.sum(encoder.embed_images(flat).reshape(*images.shape[:2], -1)
                            * text_embeddings[:count, None, :], axis=-1)
            ranks = rank_by_cosine(cosine)
            index = frame.iloc[np.repeat(np.arange(count), images.shape[1])].reset_index(drop=True)
            index.insert(0, "prompt_index", np.repeat(np.arange(count), images.shape[1]))
            index.insert(2, "sample", np.tile(np.arange(images.shape[1]), count))
            index.insert(3, "seed", np.repeat(seeds, images.shape[1]))
            index["path"] = write_pngs(folder, images)
            index["clip_cosine"] = cosine.reshape(-1)
            index["rank"] = ranks.reshape(-1)
            index.to_parquet(folder / "index.parquet", index=False)
            if name == "fast":
                shown = images.permute(0, 1, 3, 4, 2).numpy()
                if sample.rerank:
                    shown = np.take_along_axis(shown, np.argsort(ranks, axis=1)[:, :, None, None, None], axis=1)
                contact_sheet(shown, frame["prompt"].tolist()[:count]).save(tmp / "contact_sheet.png")
    write_json(report, {"sampler": {"guidance": sample.guidance, "truncation": sample.truncation,
                                    "purity": sample.purity, "samples_per_prompt": sample.samples_per_prompt},
                        **timing})
