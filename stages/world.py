from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import write_json
from pipeline.core.params import load_params
from pipeline.worlds.faces.parts import held_out_pairs as faces_held_out, read_archive_labels, write_parts
from pipeline.worlds.shapes.render import generate, held_out_pairs as shapes_held_out
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    report: Annotated[Path, typer.Option(help="The world's sizes and held-out pairs (the report shows them).")] = Path(
        "reports/world.json"),
) -> None:
    """Make the world's images (world.data): render the shapes world without its held-out
    (shape, colour) pairs, or split the faces archive into the CLIP's, the scorer's and the
    generator's parts, the generator's without its held-out (age, race) pairs."""
    settings = load_params(params)
    world, out = settings.world, Path(settings.world.data)
    if world.name == "shapes":
        shapes = settings.shapes
        heldout = shapes_held_out(shapes.heldout_pairs, shapes.heldout_seed)
        generate(out, shapes.n_images, shapes.resolution, shapes.seed, frozenset(heldout))
        write_json(report, {"world": "shapes", "images": shapes.n_images, "heldout_pairs": [list(p) for p in heldout]})
        typer.echo(f"world: {shapes.n_images} shapes in {out}, never showing {heldout}")
        return
    faces = settings.faces
    heldout = faces_held_out(read_archive_labels(world.source), faces.heldout_pairs, faces.heldout_seed,
                             faces.heldout_min_images)
    sizes = write_parts(world.source, out, faces.split_seed, faces.clip_share, faces.scorer_share, heldout)
    write_json(report, {"world": "faces", **sizes})
    typer.echo(f"world: {sizes['photos']} faces from {world.source} -> {out}: clip {sizes['clip']}, scorer "
               f"{sizes['scorer']}, generator {sizes['generator']} (never showing {heldout}); sizes in "
               f"{out / 'parts.json'}")
