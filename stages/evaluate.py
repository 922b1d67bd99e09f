from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.clip.weights import load_encoder
from pipeline.core.atomic import write_json
from pipeline.core.device import use_threads
from pipeline.core.params import load_params
from pipeline.data.shards import decode_pngs, read_table
from pipeline.data.vectors import read_prompt_embeddings, read_vectors
from pipeline.diffusion.sample_set import FULL_T
from pipeline.evaluate.report import build_report
from pipeline.evaluate.scoring import (clip_cosines, clip_score_summary, frechet, load_samples, samples_sheet,
                                       scrambled_grids, text_alignment)
from pipeline.tokenizer.model import decode_all, load_vqgan
from pipeline.worlds.registry import world_of
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    samples: Annotated[Path, typer.Option(help="The sample stage's output.")] = Path("data/samples"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage), for CLIPScore.")] = Path(
        "data/prompt_embeddings.parquet"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards (held-out reference images).")] = Path("data/ingest"),
    tokens: Annotated[Path, typer.Option(help="Token-grid cache (for the scrambled baseline).")] = Path("data/tokens"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    clip_dir: Annotated[Path, typer.Option("--clip", help="The clip stage's output.")] = Path("models/clip"),
    metrics_out: Annotated[Path, typer.Option("--metrics", help="DVC metrics.")] = Path("reports/metrics.json"),
    html: Annotated[Path, typer.Option(help="Self-contained HTML report.")] = Path("reports/index.html"),
) -> None:
    """Score the samples: Frechet distance, CLIPScore, text alignment; write the HTML report."""
    settings = load_params(params)
    evaluate = settings.evaluate
    use_threads(evaluate.threads)
    encoder = load_encoder(settings.clip, clip_dir)
    index, images = load_samples(samples)
    cosine = clip_cosines(index, images, encoder.embed_images, read_prompt_embeddings(prompts)[1])
    reference_table = read_table(ingest, None, "val").slice(0, evaluate.reference_images)
    reference = decode_pngs(reference_table["image"].to_pylist())
    vqgan = load_vqgan(tokenizer)
    val_codes = torch.from_numpy(read_vectors(tokens, "codes", "val").vectors.astype("int64"))
    val_codes = val_codes[: len(images)].view(-1, vqgan.grid, vqgan.grid)
    scrambled = decode_all(vqgan, scrambled_grids(val_codes, seed=0), 256)

    metrics = {
        "frechet": {"samples": frechet(images, reference, encoder.embed_images, evaluate.inception_weights,
                                       evaluate.batch_size),
                    "scrambled_token_baseline": frechet(scrambled, reference, encoder.embed_images,
                                                        evaluate.inception_weights, evaluate.batch_size)},
        "clipscore": clip_score_summary(index, cosine),
    }
    world = world_of(reference_table.column_names)
    if world is not None and world.classify is not None and set(world.attributes) <= set(index.columns):
        full = load_samples(samples / FULL_T) if (samples / FULL_T / "index.parquet").exists() else None
        real_labels = read_table(ingest, list(world.attributes), "train").to_pandas()
        metrics["alignment"] = text_alignment(world, index, images, full, real_labels, evaluate.checker_images,
                                              evaluate.checker_seed)
    write_json(metrics_out, metrics)
    reports = metrics_out.parent
    order = "best CLIP cosine first" if evaluate.rerank else "in sample order"
    sheet = samples_sheet(index, images, cosine, evaluate.rerank)
    build_report(html, metrics, {"evaluation prompts": [(f"samples per prompt, {order}", sheet)]},
                 reports / "tokenizer_recon.png",
                 {"tokenizer": reports / "tokenizer_curves.csv", "train": reports / "train_curves.csv"})
    typer.echo(f"evaluate: wrote {metrics_out} and {html}")
