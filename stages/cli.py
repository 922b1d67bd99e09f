"""`t2i`: one subcommand per DVC stage."""

import os
import sys

# Into a log file (dvc repro > log, CI) a progress bar writes a line every 30 s instead of ten a
# second; its monitor thread, which forces a refresh after maxinterval, waits as long. tqdm reads
# TQDM_* overrides when it is first imported, so this precedes the stages.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    os.environ.setdefault("TQDM_MAXINTERVAL", os.environ["TQDM_MININTERVAL"])

import typer  # noqa: E402

from stages import (ablation, clip, compare, embed, evaluate, generate, ingest, judge, prompts, sample,  # noqa: E402
                    scorer, tokenizer, tradeoff, train, world)

app = typer.Typer(
    help="Language-free text-to-image training: each command is one DVC stage (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("world")(world.main)
app.command("prompts")(prompts.main)
app.command("ingest")(ingest.main)
app.command("tokenizer")(tokenizer.main)
app.command("clip")(clip.main)
app.command("scorer")(scorer.main)
app.command("judge")(judge.main)
app.command("embed")(embed.main)
app.command("train")(train.main)
app.command("sample")(sample.main)
app.command("tradeoff")(tradeoff.main)
app.command("evaluate")(evaluate.main)
app.command("generate")(generate.main)
app.command("ablation")(ablation.main)
app.command("compare")(compare.main)
