"""`t2i`: one subcommand per DVC stage."""

import typer

from stages import ingest, shapes, train

app = typer.Typer(
    help="Language-free text-to-image training: each command is one DVC stage (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("shapes")(shapes.main)
app.command("ingest")(ingest.main)
app.command("train")(train.main)
