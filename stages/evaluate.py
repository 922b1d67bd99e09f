import json
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from pipeline.clip.weights import load_encoder
from pipeline.core.atomic import write_bytes, write_json
from pipeline.core.device import use_threads
from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from pipeline.data.shards import decode_pngs, read_table
from pipeline.data.vectors import read_vectors
from pipeline.generator.sample_set import FULL_T
from pipeline.evaluate.ceiling import heldout_ceiling
from pipeline.evaluate.report import build_report, read_tradeoff, svg_tradeoff, tradeoff_table
from pipeline.evaluate.scorecard import headlines, scorecard
from pipeline.evaluate.scoring import (best_of_n_pool, clip_cosines, clip_score_summary, frechet, inception_for_fid,
                                       load_samples, prompt_sets, samples_sheet, scrambled_grids, text_alignment)
from pipeline.judge.checker import judge_accuracy, load_checker
from pipeline.tokenizer.model import decode_all, load_vqgan
from pipeline.worlds.registry import world_of
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    samples: Annotated[Path, typer.Option(help="The sample stage's output.")] = Path("data/samples"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards (held-out reference images).")] = Path("data/ingest"),
    tokens: Annotated[Path, typer.Option(help="Token-grid cache (reconstructions, scrambled baseline).")] = Path(
        "data/tokens"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    scorer_dir: Annotated[Path, typer.Option("--scorer", help="The scorer stage's output.")] = Path("models/scorer"),
    judge: Annotated[Path, typer.Option(help="The judge stage's output (rule checker or CNN).")] = Path("models/judge"),
    clip_report: Annotated[Path, typer.Option(help="The conditioning CLIP's figures (its modality gap).")] = Path(
        "reports/clip.json"),
    sample_report: Annotated[Path, typer.Option(help="The sample stage's report (the model's conditioning).")] = Path(
        "reports/sample.json"),
    metrics_out: Annotated[Path, typer.Option("--metrics", help="Every figure (DVC metrics).")] = Path(
        "reports/metrics.json"),
    scorecard_out: Annotated[Path, typer.Option("--scorecard", help="The headline figures, flat (DVC metrics).")
                             ] = Path("reports/scorecard.json"),
    html: Annotated[Path, typer.Option(help="Self-contained HTML report.")] = Path("reports/index.html"),
    sheet: Annotated[Path, typer.Option(help="Contact sheet of the held-out (else seen) prompts' samples.")] = Path(
        "reports/samples.png"),
    world_report: Annotated[Path, typer.Option(help="The world stage's sizes, shown in the report.")] = Path(
        "reports/world.json"),
    logs: Annotated[Path, typer.Option(help="The training stages' DVCLive logs and the reconstruction grid.")] = Path(
        "reports"),
    tradeoff: Annotated[Path, typer.Option(help="The tradeoff stage's curve (its .json beside it: the floor).")
                        ] = Path("reports/tradeoff.csv"),
) -> None:
    """Score the samples: FID and KID with their floors (Inception-v3; offline, the scoring CLIP's
    Frechet and kernel distances), CLIPScore with the independent scoring CLIP, and text
    alignment per prompt set with the CLIP-free checker; write the report."""
    settings = load_params(params)
    evaluate = settings.evaluate
    use_threads(evaluate.threads)
    weights = inception_for_fid(evaluate.inception_weights, partial(typer.echo, err=True))
    n = evaluate.fd_images
    scorer = load_encoder(settings.scorer, scorer_dir)
    index, images = load_samples(samples)
    prompts = index.drop_duplicates("prompt_index").sort_values("prompt_index")
    cosine = clip_cosines(index, scorer.embed_images(images), scorer.embed_texts(prompts["prompt"].tolist()))

    val = read_table(ingest, None, "val")
    if len(val) < 2 * n:
        raise UserError(f"evaluate.fd_images = {n}: the Frechet floors need 2 x {n} held-out (val) images and "
                        f"{ingest} has {len(val)}; lower evaluate.fd_images or raise ingest.val_fraction")
    sets = prompt_sets(index)
    fd_rows = np.flatnonzero(sets.get("seen", sets.get("all")))[:n]  # seen combinations: what the reference shows
    reference = decode_pngs(val.slice(0, n)["image"].to_pylist())
    others = val.slice(n, len(fd_rows))  # the floors, at the generated N: real, reconstructions, scrambled codes
    other_images = decode_pngs(others["image"].to_pylist())
    vqgan = load_vqgan(tokenizer)
    codes = read_vectors(tokens, "codes", "val")
    row = {image_id: i for i, image_id in enumerate(codes.ids)}
    other_codes = torch.from_numpy(codes.vectors[[row[i] for i in others["id"].to_pylist()]].astype("int64"))
    other_codes = other_codes.view(-1, vqgan.grid, vqgan.grid)
    reconstructions = decode_all(vqgan, other_codes, 256)

    embed, batch = scorer.embed_images, evaluate.batch_size
    scorer_name = f"{scorer.model_name} {scorer.checkpoint_id} (scorer)"
    metrics: dict = {
        "scored_by": {"frechet": scorer_name if weights is None else f"torch-fidelity inception-v3-compat {weights}",
                      "clipscore": scorer_name, "alignment": "none: the data carry no world's labels"},
        "frechet": {"samples": frechet(images[torch.from_numpy(fd_rows)], reference, embed, weights, batch),
                    "real_vs_real": frechet(other_images, reference, embed, weights, batch),
                    "reconstructions": frechet(reconstructions, reference, embed, weights, batch),
                    "scrambled_token_baseline": frechet(decode_all(vqgan, scrambled_grids(other_codes, seed=0), 256),
                                                        reference, embed, weights, batch)},
        "clipscore": clip_score_summary(index, cosine),
    }
    world = world_of(val.column_names)
    if world is not None and set(world.attributes) <= set(index.columns):
        names = list(world.attributes)
        classify = load_checker(world, judge)
        full = load_samples(samples / FULL_T) if (samples / FULL_T / "index.parquet").exists() else None
        real_labels = read_table(ingest, names, "train").to_pandas()
        metrics["scored_by"]["alignment"] = ("the world's CLIP-free rule checker" if world.classify is classify
                                             else f"the judge CNN {judge} (CLIP-free)")
        metrics["alignment"] = text_alignment(world, classify, index, images, cosine, full, real_labels)
        other_labels = others.select(names).to_pandas()
        metrics["checker"] = {"real_heldout": judge_accuracy(classify, names, other_images, other_labels),
                              "reconstructions": judge_accuracy(classify, names, reconstructions, other_labels)}
        if world.checker_accuracy is not None:
            metrics["checker"]["fresh_renders"] = world.checker_accuracy(evaluate.checker_images,
                                                                         evaluate.checker_seed, images.shape[-1])
        if world.render is not None and "heldout" in sets:
            metrics["checker"]["heldout_pairs"] = heldout_ceiling(world, classify, vqgan, index[sets["heldout"]],
                                                                  evaluate.checker_images, evaluate.checker_seed)
    metrics["world"] = json.loads(world_report.read_text())
    sampler = json.loads(sample_report.read_text())["sampler"]
    conditioning, generator = sampler["conditioning"], sampler.get("generator", "vqdiffusion")
    card = {"generator": generator, **scorecard(metrics, json.loads(clip_report.read_text()), conditioning,
                                                json.loads((logs / "tokenizer/metrics.json").read_text()))}
    write_json(metrics_out, metrics)
    write_json(scorecard_out, card)
    order = "best first by the scoring CLIP's cosine" if evaluate.rerank else "in sample order"
    pool = best_of_n_pool(index)  # the sheets rank what a best of N ranks
    samples_by_set = {name: (index[mask].drop_duplicates("prompt_index")["prompt"].tolist(),
                             [(f"{evaluate.sheet_samples} samples per prompt, {order}",
                               samples_sheet(index[mask & pool], images[torch.tensor(mask & pool)],
                                             cosine[mask & pool], evaluate.rerank, evaluate.sheet_samples))])
                      for name, mask in sets.items()}
    shown = "heldout" if "heldout" in sets else next(iter(sets))
    write_bytes(sheet, samples_by_set[shown][1][0][1])
    build_report(html, headlines(card, metrics, world.name if world else None), samples_by_set,
                 tradeoff_chart(tradeoff),
                 {name: logs / name for name in ("tokenizer", "clip", "scorer", "judge", "train")
                  if any((logs / name / "plots/metrics").glob("*.tsv"))},
                 logs / "tokenizer_recon.png", {"scorecard": card, **metrics},
                 intro=f"{world_sizes(metrics['world'])} Generator {generator}, pseudo text {conditioning}. It is "
                       "conditioned by the clip stage's CLIP; no figure here is scored by it but the gap it reports "
                       "of itself.")
    typer.echo(f"evaluate: wrote {scorecard_out}, {metrics_out} and {html}")


def world_sizes(world: dict) -> str:
    """One sentence on the data: its world, parts and held-out pairs."""
    pairs = ", ".join(f"({a}, {b})" for a, b in world.get("heldout_pairs", [])) or "none"
    if world["world"] == "faces":
        return (f"World: faces, {world['photos']:,} photos in disjoint parts: the conditioning CLIP's "
                f"{world['clip']:,}, the scorer's and judge's {world['scorer']:,}, the generator's "
                f"{world['generator']:,} (without the held-out pairs {pairs}: {world['generator_heldout_dropped']:,} "
                f"photos; {world['duplicates_dropped']:,} duplicate pictures kept once).")
    return f"World: {world['world']}, {world['images']:,} images, never showing the held-out pairs {pairs}."


def tradeoff_chart(curve: Path) -> str | None:
    """The trade-off stage's points as the report's chart, with the real-vs-real floor at its N,
    and as a table."""
    if not curve.is_file():
        return None
    summary = curve.with_suffix(".json")
    floor = json.loads(summary.read_text())["fd_floor_real"] if summary.is_file() else None
    rows, columns = read_tradeoff(curve), ("fd_scorer_clip", "align_all", "align_low", "align_high")
    return (svg_tradeoff(rows, *columns, floor, "Frechet distance, scoring CLIP (lower is better)",
                         "alignment, all four attributes") + tradeoff_table(rows, *columns))
