from pathlib import Path
from typing import Annotated

import typer

from pipeline.clip.weights import load_encoder
from pipeline.core import distributed
from pipeline.core.device import use_threads
from pipeline.core.params import load_params
from pipeline.data.prompts import load_prompts
from pipeline.data.vectors import cache_ingest_shards, write_prompt_embeddings
from stages.common import ParamsOption, parse_shard, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards.")] = Path("data/ingest"),
    clip_dir: Annotated[Path, typer.Option("--clip", help="The clip stage's output.")] = Path("models/clip"),
    out: Annotated[Path, typer.Option(help="CLIP image embedding of every image.")] = Path("data/embeddings"),
    prompts_out: Annotated[Path, typer.Option("--prompts-out", help="Prompt text embeddings.")] = Path(
        "data/prompt_embeddings.parquet"),
    shard: Annotated[str | None, typer.Option(
        help="i/N: be worker i of N into the same --out (ingest shards i, i+N, ...; worker 0 also writes the "
             "prompts). Under torchrun it defaults to RANK/WORLD_SIZE.")] = None,
) -> None:
    """Cache CLIP image embeddings of every image and text embeddings of the prompts."""
    settings = load_params(params)
    use_threads(settings.embed.threads)
    worker, workers = parse_shard(shard) if shard is not None else distributed.launched()
    encoder = load_encoder(settings.clip, clip_dir)
    metadata = {"model": encoder.model_name, "checkpoint": encoder.checkpoint_id}
    rows = cache_ingest_shards(ingest, out, "embedding", encoder.embed_images, metadata, desc="embed",
                               shard=(worker, workers))
    if worker > 0:
        typer.echo(f"embed: worker {worker}/{workers} cached {rows} images with {encoder.model_name}")
        return
    prompts = load_prompts(settings.embed.prompts, settings.embed.prompt_prefix)
    write_prompt_embeddings(prompts_out, prompts, encoder.embed_texts(prompts["prompt"].tolist()), metadata)
    typer.echo(f"embed: {rows} images and {len(prompts)} prompts with {encoder.model_name}")
