from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import atomic_file
from pipeline.core.params import load_params
from pipeline.worlds.faces.parts import held_out_pairs as faces_held_out, read_archive_labels
from pipeline.worlds.faces.prompts import faces_prompts
from pipeline.worlds.shapes.prompts import shapes_prompts
from pipeline.worlds.shapes.render import held_out_pairs as shapes_held_out
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="The evaluation prompts CSV (embed.prompts).")] = Path(
        "data/prompts.csv"),
) -> None:
    """Write the world's evaluation prompts: seen and held-out combinations, new wordings,
    partial prompts (pipeline/worlds/<world>/prompts.py)."""
    settings = load_params(params)
    if settings.world.name == "shapes":
        shapes = settings.shapes
        frame = shapes_prompts(shapes_held_out(shapes.heldout_pairs, shapes.heldout_seed))
    else:
        faces = settings.faces
        frame = faces_prompts(faces_held_out(read_archive_labels(settings.world.source), faces.heldout_pairs,
                                             faces.heldout_seed, faces.heldout_min_images))
    with atomic_file(out) as tmp:
        frame.to_csv(tmp, index=False)
    counts = frame.groupby(["set", "split"]).size().to_dict()
    typer.echo(f"prompts: {len(frame)} in {out}: {counts}")
