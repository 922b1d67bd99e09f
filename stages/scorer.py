from pathlib import Path
from typing import Annotated

import typer

from pipeline.clip.pretrain import pretrain_clip
from pipeline.core.device import use_threads
from pipeline.core.params import load_params
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the scoring CLIP's checkpoint.")] = Path("models/scorer"),
    report: Annotated[Path, typer.Option(help="Gap, retrieval and zero-shot figures.")] = Path(
        "reports/scorer.json"),
    live: Annotated[Path, typer.Option(help="DVCLive log of the training: loss, lr, temperature per step.")] = Path(
        "reports/scorer"),
) -> None:
    """Pretrain the independent CLIP that scores samples (CLIPScore, Frechet distance) and never
    conditions the generator, on a third render stream (a no-op with a pretrained CLIP)."""
    scorer = load_params(params).scorer
    use_threads(scorer.threads)
    figures = pretrain_clip(scorer, "scorer", out, report, live)
    typer.echo(f"scorer: {figures['model']} -> {out}, figures in {report}")
