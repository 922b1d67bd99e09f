import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.device import use_threads
from pipeline.core.errors import UserError
from pipeline.core.live import TrainingLog
from pipeline.core.params import load_params
from pipeline.data.labelled import load_labelled
from pipeline.judge.checker import JUDGE_FILE, RULES
from pipeline.judge.model import save_judge
from pipeline.judge.train import train_judge
from pipeline.worlds.registry import WORLDS
from stages.common import ParamsOption, user_errors

RESOLUTION = 64  # the faces world's image size; the judge resizes other sizes to it when it reads them


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the judge: judge.pt, or RULES for a rule checker.")] = Path(
        "models/judge"),
    report: Annotated[Path, typer.Option(help="Val accuracy per attribute with intervals and chance.")] = Path(
        "reports/judge.json"),
    live: Annotated[Path, typer.Option(help="DVCLive log of the training: loss, lr, val accuracy.")] = Path(
        "reports/judge"),
    work: Annotated[Path, typer.Option(help="Checkpoints for resuming a killed run.")] = Path("checkpoints/judge"),
) -> None:
    """Train the CLIP-free judge CNN on judge.data, a labelled folder (a no-op marker when
    judge.data is null and the world has a rule checker)."""
    config = load_params(params)
    settings = config.judge
    use_threads(settings.threads)
    world = WORLDS.get(config.world.name)
    if world is None:
        raise UserError(f"world.name = {config.world.name!r}: no such world; known: {sorted(WORLDS)}")
    if settings.data is None and world.classify is None:
        raise UserError(f"judge.data is null, but world {world.name!r} has no rule checker; set judge.data to a "
                        "labelled folder of its photos to train the judge on")
    log = TrainingLog(live, {"judge": dataclasses.asdict(settings)})
    with atomic_dir(out) as tmp:
        if settings.data is None:
            (tmp / RULES).write_text(f"{world.name}: scored by the world's rule checker\n")
            log.begin(0, [])
            log.end()
            write_json(report, {"judge": "rules", "world": world.name})
            typer.echo(f"judge: {world.name}'s rule checker -> {out / RULES}")
            return
        images, labels = load_labelled(settings.data, list(world.attributes), RESOLUTION)
        model, figures = train_judge(images, labels, world.attributes, settings, work, log)
        save_judge(model, tmp / JUDGE_FILE)
    log.end({k: v for k, v in figures.items() if isinstance(v, (int, float))})
    write_json(report, {"judge": "cnn", "world": world.name, **figures})
    typer.echo("judge: val accuracy " + ", ".join(f"{name} {figures[name]:.3f} (chance {figures[name + '_chance']:.3f})"
                                                  for name in world.attributes) + f" -> {out / JUDGE_FILE}")
