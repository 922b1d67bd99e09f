"""`t2i`: one subcommand per DVC stage."""

import typer

from stages import clip, embed, evaluate, generate, ingest, sample, shapes, tokenizer, train

app = typer.Typer(
    help="Language-free text-to-image training: each command is one DVC stage (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("shapes")(shapes.main)
app.command("ingest")(ingest.main)
app.command("tokenizer")(tokenizer.main)
app.command("clip")(clip.main)
app.command("embed")(embed.main)
app.command("train")(train.main)
app.command("sample")(sample.main)
app.command("evaluate")(evaluate.main)
app.command("generate")(generate.main)
