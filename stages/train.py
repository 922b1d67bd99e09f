import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pipeline.clip.weights import load_encoder
from pipeline.clipgen.model import save_model as save_clipgen
from pipeline.clipgen.train import train_clipgen
from pipeline.core import distributed
from pipeline.core.device import use_threads
from pipeline.core.live import TrainingLog
from pipeline.core.params import Params, TrainParams, load_params
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.diffusion.model import save_model as save_diffusion
from pipeline.diffusion.train import train_diffusion
from pipeline.diffusion.transformer import flops_per_step
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.data import (GeneratorRun, ImageTrainingData, TrainingData, load_image_training_data,
                                     load_training_data, with_text_mean)
from pipeline.generator.pseudo_text import setting_name
from pipeline.lafite.model import save_model as save_lafite
from pipeline.lafite.train import train_lafite
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    tokens: Annotated[Path, typer.Option(help="Token-grid cache (tokenizer stage).")] = Path("data/tokens"),
    embeddings: Annotated[Path, typer.Option(help="CLIP embedding cache (embed stage).")] = Path("data/embeddings"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage): C3's text mean.")] = Path(
        "data/prompt_embeddings.parquet"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards: the images LAFITE learns from.")] = Path("data/ingest"),
    clip_dir: Annotated[Path, typer.Option("--clip", help="The clip stage's folder: LAFITE trains through its "
                                                           "image encoder.")] = Path("models/clip"),
    out: Annotated[Path, typer.Option(help="The trained (EMA) generator.")] = Path("models/generator.pt"),
    work: Annotated[Path, typer.Option(help="Checkpoints for resuming a killed run.")] = Path("checkpoints/train"),
    live: Annotated[Path, typer.Option(help="DVCLive log: params, loss per logged step, final figures.")] = Path(
        "reports/train"),
) -> None:
    """Train the generator train.generator names (VQ-Diffusion, LAFITE or CLIP-GEN) on pseudo text
    embeddings (no captions); under torchrun, data-parallel over the processes (rank 0 writes)."""
    settings = load_params(params)
    train = settings.train
    use_threads(train.threads)
    if train.generator == "lafite":
        data = load_image_training_data(ingest, embeddings)
    else:
        data = load_training_data(tokens, embeddings)
    if train.pseudo_text == "c3":
        data = with_text_mean(data, read_prompt_embeddings(prompts)[1])
    conditioning = Conditioning(train.pseudo_text, train.pseudo_scale, data.means)
    with distributed.process_group(settings.distributed.backend):
        log = TrainingLog(live, {"train": dataclasses.asdict(train)}) if distributed.is_main() else None
        result = fit(settings, data, clip_dir, work, log)
        if distributed.is_main():
            if train.generator == "vqdiffusion":
                save_diffusion(out, result.model, result.config, train.abar_range, train.gbar_range, data.sources,
                               conditioning)
            elif train.generator == "clipgen":
                save_clipgen(out, result.model, result.config, data.sources, conditioning)
            else:
                save_lafite(out, result.model, result.config, data.sources, conditioning)
            log.end(final_figures(result, train, len(data.embeddings)))


def fit(settings: Params, data: TrainingData | ImageTrainingData, clip_dir: Path, work: Path,
        log: TrainingLog | None) -> GeneratorRun:
    train = settings.train
    if train.generator == "vqdiffusion":
        return train_diffusion(train, data, work, log)
    if train.generator == "clipgen":
        return train_clipgen(train, data, work, log)
    return train_lafite(train, data, load_encoder(settings.clip, clip_dir), work, log)


def final_figures(result: GeneratorRun, train: TrainParams, train_images: int) -> dict[str, float | str]:
    """The run's summary beside its last logged values: losses over the last few logged batches
    (not one noisy one), size and speed."""
    tail = result.history[-10:]
    losses = [key for key in tail[0] if key not in ("step", "lr", "steps_per_s")]
    figures = {
        "generator": train.generator,
        "pseudo_text": setting_name(train.pseudo_text, train.pseudo_scale),
        "steps": result.steps,
        "images_seen": result.images_seen,
        "train_images": train_images,
        **{f"final_{key}": round(sum(row[key] for row in tail) / len(tail), 5) for key in losses},
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "wall_seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_seen / max(result.seconds, 1e-9), 1),
    }
    if train.generator == "vqdiffusion":
        # model FLOP/s: training is about 3x the forward pass (bench/train.py sets it against the matmul peak)
        figures["gflop_per_second"] = round(3 * flops_per_step(result.config, result.images_seen)
                                            / max(result.seconds, 1e-9) / 1e9, 2)
    return figures
