import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core import distributed
from pipeline.core.atomic import atomic_file
from pipeline.core.checksum import sha256_file
from pipeline.core.device import use_threads
from pipeline.core.live import TrainingLog
from pipeline.core.params import load_params
from pipeline.data.shards import load_images
from pipeline.data.vectors import cache_ingest_shards
from pipeline.tokenizer.metrics import evaluate_tokenizer, reconstruction_grid
from pipeline.tokenizer.model import encode_all, save_vqgan
from pipeline.tokenizer.train import train_tokenizer
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards.")] = Path("data/ingest"),
    out: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    tokens: Annotated[Path, typer.Option(help="Code grid of every image (Parquet cache).")] = Path("data/tokens"),
    work: Annotated[Path, typer.Option(help="Checkpoints for resuming a killed run.")] = Path("checkpoints/tokenizer"),
    live: Annotated[Path, typer.Option(help="DVCLive log: params, losses per logged step, val figures.")] = Path(
        "reports/tokenizer"),
    grid: Annotated[Path, typer.Option(help="Originals over reconstructions.")] = Path("reports/tokenizer_recon.png"),
) -> None:
    """Train the Gumbel-softmax VQGAN tokenizer and cache every image's code grid; under torchrun,
    data-parallel over the processes (rank 0 writes the model and reports, all encode the cache)."""
    config = load_params(params)
    settings = config.tokenizer
    use_threads(settings.threads)
    _, train_images = load_images(ingest, "train")
    _, val_images = load_images(ingest, "val")
    with distributed.process_group(config.distributed.backend):
        log = TrainingLog(live, {"tokenizer": dataclasses.asdict(settings)}) if distributed.is_main() else None
        result = train_tokenizer(settings, train_images, work, val_images, log=log)
        model = result.model
        if distributed.is_main():
            save_vqgan(model, out)
            figures = evaluate_tokenizer(model, val_images, settings.encode_batch_size)
            log.end({**{k: round(v, 5) if isinstance(v, float) else v for k, v in figures.items()},
                     "n_codes": settings.n_codes, "grid": model.grid, "train_images": len(train_images),
                     "steps": settings.steps, "wall_seconds": round(result.seconds, 1)})
            with atomic_file(grid) as tmp:
                reconstruction_grid(model, val_images[:16]).save(tmp, format="PNG")
        distributed.barrier()  # the model file exists before every process names the cache after it
        metadata = {"n_codes": settings.n_codes, "code_books": settings.code_books, "grid_h": model.grid,
                    "grid_w": model.grid, "checkpoint": sha256_file(out)}
        cache_ingest_shards(ingest, tokens, "codes",
                            lambda images: encode_all(model, images, settings.encode_batch_size).flatten(1).numpy(),
                            metadata, desc="tokens", shard=(distributed.rank(), distributed.world()))
        if distributed.is_main():
            typer.echo(f"tokenizer: val PSNR {figures['psnr']:.2f} dB, codebook usage {figures['codebook_usage']:.2f}")
