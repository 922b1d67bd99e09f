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
    out: Annotated[Path, typer.Option(help="Folder for the trained CLIP checkpoint.")] = Path("models/clip"),
    report: Annotated[Path, typer.Option(help="Gap, retrieval and zero-shot figures.")] = Path("reports/clip.json"),
    live: Annotated[Path, typer.Option(help="DVCLive log of the training: loss, lr, temperature per step.")] = Path(
        "reports/clip"),
) -> None:
    """Pretrain the CLIP that conditions the generator on its world's own renders (a no-op with a
    pretrained CLIP)."""
    clip = load_params(params).clip
    use_threads(clip.threads)
    figures = pretrain_clip(clip, "clip", out, report, live)
    typer.echo(f"clip: {figures['model']} -> {out}, figures in {report}")
