from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import atomic_file
from pipeline.core.params import load_params
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import held_out_pairs
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="The evaluation prompts CSV (embed.prompts).")] = Path(
        "data/prompts.csv"),
) -> None:
    """Write the shapes world's evaluation prompts: seen and held-out combinations, new wordings,
    partial prompts (pipeline/worlds/shapes/prompts.py)."""
    shapes = load_params(params).shapes
    frame = shapes_prompts(held_out_pairs(shapes.heldout_pairs, shapes.heldout_seed))
    with atomic_file(out) as tmp:
        frame.to_csv(tmp, index=False)
    counts = frame.groupby(["set", "split"]).size().to_dict()
    typer.echo(f"prompts: {len(frame)} in {out}: {counts}")
