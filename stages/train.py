from pathlib import Path
from typing import Annotated

import typer

from pipeline.core import distributed
from pipeline.core.atomic import write_csv, write_json
from pipeline.core.device import use_threads
from pipeline.core.params import TrainParams, load_params
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.diffusion.model import Conditioning, save_model
from pipeline.diffusion.train import (HISTORY_COLUMNS, DiffusionRun, TrainingData, load_training_data, train_diffusion,
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
    report: Annotated[Path, typer.Option(help="Final figures (DVC metrics).")] = Path("reports/train.json"),
    curves: Annotated[Path, typer.Option(help="Loss, lr and speed per logged step (DVC plots).")] = Path(
        "reports/train_curves.csv"),
) -> None:
    """Train the VQ-Diffusion transformer on pseudo text embeddings (no captions); under torchrun,
    data-parallel over the processes (rank 0 writes)."""
    settings = load_params(params)
    use_threads(settings.train.threads)
    data = load_training_data(tokens, embeddings)
    if settings.train.pseudo_text == "c3":
        data = with_text_mean(data, read_prompt_embeddings(prompts)[1])
    with distributed.process_group(settings.distributed.backend):
        result = train_diffusion(settings.train, data, work)
        if distributed.is_main():
            write_outputs(result, settings.train, data, out, report, curves)


def write_outputs(result: DiffusionRun, train: TrainParams, data: TrainingData, out: Path, report: Path,
                  curves: Path) -> None:
    save_model(out, result.model, result.config, train.abar_range, train.gbar_range, data.sources,
               Conditioning(train.pseudo_text, train.pseudo_scale, data.means))
    write_csv(curves, result.history, HISTORY_COLUMNS)
    tail = result.history[-10:]  # a few logged batches, not one noisy one

    def final(key: str) -> float:
        return round(sum(row[key] for row in tail) / len(tail), 5)

    write_json(report, {
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
    })
