"""`t2i compare`: the three language-free generators side by side, one command (not a DVC stage).

Each generator (VQ-Diffusion, LAFITE, CLIP-GEN: train.generator) is trained on the pipeline's
own caches with the default run's pseudo-text setting, seed and conditioning CLIP, samples the
same evaluation prompts and is scored by the same CLIP-free judge and independent scoring CLIP
(pipeline/evaluate/variants.py runs each under data/compare/<world>/<generator>/). Writes
comparison.{md,json}, comparison.html (the table with the contact sheets side by side) and each
generator's contact sheet in comparison/, all under world.reports (reports/, faces: reports/faces/).
"""

from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import write_bytes, write_json
from pipeline.core.errors import UserError
from pipeline.core.params import load_raw, parse_params
from pipeline.evaluate.comparison import (GENERATORS, comparison_json, comparison_markdown, comparison_page,
                                         run_figures)
from pipeline.evaluate.variants import run_variant
from stages.common import ParamsOption, user_errors

# Training steps of the new generators by default, per world: what fits a 20-minute budget each on a
# 2-core CPU at the world's sizes (README "Three generators compared" gives the measured times);
# a world not named here gets the shapes budget. VQ-Diffusion trains train.steps, as the DVC run does.
DEFAULT_STEPS = {"shapes": {"lafite": 1200, "clipgen": 2000}, "faces": {"lafite": 1800, "clipgen": 1600}}
TRAIN_CHECKPOINTS = Path("checkpoints/train")  # the train stage's: the default generator is reloaded, not retrained


def _steps(given: list[str], world: str, vqdiffusion: int) -> dict[str, int]:
    steps = {"vqdiffusion": vqdiffusion, **DEFAULT_STEPS.get(world, DEFAULT_STEPS["shapes"])}
    for item in given:
        name, _, value = item.partition("=")
        if name not in GENERATORS or not value.isdigit() or int(value) < 1:
            raise UserError(f"--steps {item!r}: give GENERATOR=N with GENERATOR one of {', '.join(GENERATORS)} "
                            "and N a positive integer, e.g. --steps lafite=1500")
        steps[name] = int(value)
    return steps


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    generators: Annotated[list[str] | None, typer.Option("--generator", help="Only these (repeat the option); "
                                                         "default: all three.")] = None,
    steps: Annotated[list[str] | None, typer.Option(help="Training steps of a generator, GENERATOR=N (repeat the "
                                                    "option); defaults: vqdiffusion train.steps, the others per "
                                                    f"world {DEFAULT_STEPS}.")] = None,
    samples: Annotated[int, typer.Option(help="Samples per evaluation prompt.")] = 16,
    work: Annotated[Path | None, typer.Option(help="Per-generator params, models, samples and scores; default "
                                              "data/compare/<world.name>.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for comparison.md, comparison.json and comparison/; "
                                             "default world.reports (reports/, faces: reports/faces/).")] = None,
) -> None:
    """Train, sample and score each generator on the same caches, prompts and scorer; write
    <world.reports>/comparison.{md,json}. Needs the pipeline's caches (`dvc repro embed tokenizer judge scorer`)
    first."""
    raw = load_raw(params)
    parse_params(raw, str(params))  # fail on a bad params file before anything trains
    world = raw["world"]["name"]
    work = work or Path("data/compare") / world
    out = out or Path(raw["world"]["reports"])
    chosen = generators or list(GENERATORS)
    unknown = sorted(set(chosen) - set(GENERATORS))
    if unknown:
        raise UserError(f"--generator {unknown[0]!r}: not a generator; choose from {', '.join(GENERATORS)}")
    budget = _steps(steps or [], world, raw["train"]["steps"])
    cards, figures, sheets = {}, {}, {}
    for name in chosen:
        folder = work / name
        overrides = {"train": {"generator": name, "steps": budget[name]},
                     "sample": {"samples_per_prompt": samples, "full_steps_prompts": 0}}
        same_as_dvc_run = all(raw["train"][key] == value for key, value in overrides["train"].items())
        cards[name] = run_variant(raw, overrides, folder, "compare", TRAIN_CHECKPOINTS if same_as_dvc_run else None)
        figures[name] = run_figures(folder)
        sheets[name] = (folder / "samples.png").read_bytes()
        write_bytes(out / "comparison" / f"{name}.png", sheets[name])
    table = comparison_json(cards, figures, samples, world)
    write_json(out / "comparison.json", table)
    markdown = comparison_markdown(table, out)
    write_bytes(out / "comparison.md", markdown.encode())
    comparison_page(out / "comparison.html", table, markdown, sheets)
    typer.echo(f"compare: wrote {out / 'comparison.md'}, {out / 'comparison.json'} and {out / 'comparison.html'}")
