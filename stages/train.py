import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core import distributed
from pipeline.core.device import use_threads
from pipeline.core.live import TrainingLog
from pipeline.core.params import TrainParams, load_params
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.diffusion.model import Conditioning, save_model
from pipeline.diffusion.train import (DiffusionRun, TrainingData, load_training_data, train_diffusion,
                                      with_text_mean)
from pipeline.diffusion.pseudo_text import setting_name
from pipeline.diffusion.transformer import flops_per_step
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    tokens: Annotated[Path, typer.Option(help="Token-grid cache (tokenizer stage).")] = Path("data/tokens"),
    embeddings: Annotated[Path, typer.Option(help="CLIP embedding cache (embed stage).")] = Path("data/embeddings"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage): C3's text mean.")] = Path(
        "data/prompt_embeddings.parquet"),
    out: Annotated[Path, typer.Option(help="The trained (EMA) model.")] = Path("models/diffusion.pt"),
    work: Annotated[Path, typer.Option(help="Checkpoints for resuming a killed run.")] = Path("checkpoints/train"),
    live: Annotated[Path, typer.Option(help="DVCLive log: params, loss per logged step, final figures.")] = Path(
        "reports/train"),
) -> None:
    """Train the VQ-Diffusion transformer on pseudo text embeddings (no captions); under torchrun,
    data-parallel over the processes (rank 0 writes)."""
    settings = load_params(params)
    use_threads(settings.train.threads)
    data = load_training_data(tokens, embeddings)
    if settings.train.pseudo_text == "c3":
        data = with_text_mean(data, read_prompt_embeddings(prompts)[1])
    with distributed.process_group(settings.distributed.backend):
        log = TrainingLog(live, {"train": dataclasses.asdict(settings.train)}) if distributed.is_main() else None
        result = train_diffusion(settings.train, data, work, log)
        if distributed.is_main():
            save_model(out, result.model, result.config, settings.train.abar_range, settings.train.gbar_range,
                       data.sources, Conditioning(settings.train.pseudo_text, settings.train.pseudo_scale, data.means))
            log.end(final_figures(result, settings.train, data))


def final_figures(result: DiffusionRun, train: TrainParams, data: TrainingData) -> dict[str, float | str]:
    """The run's summary beside its last logged values: losses over the last few logged batches
    (not one noisy one), size and speed."""
    tail = result.history[-10:]

    def final(key: str) -> float:
        return round(sum(row[key] for row in tail) / len(tail), 5)

    return {
        "pseudo_text": setting_name(train.pseudo_text, train.pseudo_scale),
        "steps": result.steps,
        "images_seen": result.images_seen,
        "train_images": len(data.codes),
        "final_loss": final("loss"),
        "final_vlb": final("vlb"),
        "final_aux": final("aux"),
        "parameters": result.model.num_params(),
        "wall_seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_seen / max(result.seconds, 1e-9), 1),
        # model FLOP/s: training is about 3x the forward pass (bench/train.py sets it against the matmul peak)
        "gflop_per_second": round(3 * flops_per_step(result.config, result.images_seen) / max(result.seconds, 1e-9)
                                  / 1e9, 2),
    }
