import functools
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from pipeline.clip.weights import load_encoder
from pipeline.core.atomic import write_csv, write_json
from pipeline.core.device import resolve_device, use_threads
from pipeline.core.params import load_params
from pipeline.data.shards import read_table
from pipeline.data.vectors import read_prompt_embeddings
from pipeline.generator.load import load_generator
from pipeline.generator.pseudo_text import inference_condition, setting_name
from pipeline.evaluate.tradeoff import (COLUMNS, Scoring, checker_world, draw_point, fd_count, prompt_set_rows,
                                        real_floor, real_sets, run_sweep, score_point, sweep_points)
from pipeline.judge.checker import load_checker
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="The trained diffusion model.")] = Path(
        "models/generator.pt"),
    tokenizer: Annotated[Path, typer.Option(help="The trained tokenizer.")] = Path("models/tokenizer.pt"),
    prompts: Annotated[Path, typer.Option(help="Prompt text embeddings (embed stage).")] = Path(
        "data/prompt_embeddings.parquet"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards (held-out reference images).")] = Path("data/ingest"),
    scorer_dir: Annotated[Path, typer.Option("--scorer", help="The scorer stage's output.")] = Path("models/scorer"),
    judge: Annotated[Path, typer.Option(help="The judge stage's output (rule checker or CNN).")] = Path("models/judge"),
    out: Annotated[Path, typer.Option(help="One row per point (a DVC plot).")] = Path("reports/tradeoff.csv"),
    report: Annotated[Path, typer.Option(help="The floor, N, the scorer and the timing (DVC metrics).")] = Path(
        "reports/tradeoff.json"),
) -> None:
    """Sample a prompt set at every guidance and truncation of the sweep and score each point: text
    alignment by the CLIP-free checker, Frechet distance in the scoring CLIP's space."""
    start = time.perf_counter()
    settings = load_params(params)
    sample, tradeoff = settings.sample, settings.tradeoff
    points = sweep_points(tradeoff.guidance, tradeoff.truncation, sample.guidance, sample.truncation)
    use_threads(tradeoff.threads)
    device = resolve_device(tradeoff.device)
    frame, text = read_prompt_embeddings(prompts)
    chosen = prompt_set_rows(frame, tradeoff.prompt_set)
    frame, text = frame[chosen].reset_index(drop=True), text[chosen]
    per_point = len(frame) * tradeoff.samples_per_prompt
    n = fd_count(tradeoff.fd_images, per_point)
    val = read_table(ingest, None, "val")
    reference, others = real_sets(val, n)
    scorer = load_encoder(settings.scorer, scorer_dir)
    model = load_generator(model_path, tokenizer, device)
    conditioning = model.conditioning
    if not model.uses_guidance:  # its guidance line would repeat one point
        points = [point for point in points if point.sweep != "guidance" or point.guidance == sample.guidance]
    conditions = inference_condition(torch.from_numpy(text.copy()), conditioning.mode, conditioning.means)
    draw = functools.partial(draw_point, model, conditions, sample, tradeoff.samples_per_prompt, tradeoff.seed)
    world = checker_world(val.column_names, frame.columns)
    classify = load_checker(world, judge, device) if world is not None else None
    scoring = Scoring(scorer.embed_images, reference, frame, classify, list(world.attributes) if world else [],
                      settings.scorer.batch_size)
    table, timing = run_sweep(points, draw, functools.partial(score_point, scoring=scoring))
    floor = real_floor(others, scoring)
    write_csv(out, table, COLUMNS)
    write_json(report, {
        "fd_floor_real": floor, "fd_n": n, "samples_per_point": per_point, "points": len(points),
        "prompt_set": tradeoff.prompt_set, "prompts": len(frame), "samples_per_prompt": tradeoff.samples_per_prompt,
        "steps": sample.steps or model.full_steps, "generator": model.kind, "seed": tradeoff.seed,
        "pseudo_text": setting_name(conditioning.mode, conditioning.scale),
        "scored_by": {"frechet": f"{scorer.model_name} {scorer.checkpoint_id} (scorer)",
                      "alignment": "the world's CLIP-free judge" if world else "none: no checker for this data"},
        "timing": {**timing, "seconds": round(time.perf_counter() - start, 2)}})
    typer.echo(f"tradeoff: {len(points)} points, wrote {out} and {report}")
