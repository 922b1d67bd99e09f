from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.params import load_params
from pipeline.worlds.shapes.render import generate, held_out_pairs
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for images/ and labels.csv.")] = Path("data/shapes"),
) -> None:
    """Render the seeded, captioned shapes world (the offline default data set), without its
    held-out (shape, colour) pairs."""
    shapes = load_params(params).shapes
    heldout = held_out_pairs(shapes.heldout_pairs, shapes.heldout_seed)
    generate(out, shapes.n_images, shapes.resolution, shapes.seed, frozenset(heldout))
    typer.echo(f"shapes: {shapes.n_images} images in {out}, never showing {heldout}")
