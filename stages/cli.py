"""`t2i`: one subcommand per DVC stage."""

import importlib
import os
import sys

# Into a log file (dvc repro > log, CI) a progress bar writes a line every 30 s instead of ten a
# second; its monitor thread, which forces a refresh after maxinterval, waits as long. tqdm reads
# TQDM_* overrides when it is first imported, so this precedes the stages.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    os.environ.setdefault("TQDM_MAXINTERVAL", os.environ["TQDM_MININTERVAL"])

import typer  # noqa: E402

COMMANDS = ("world", "prompts", "ingest", "tokenizer", "clip", "scorer", "judge", "embed", "train", "sample",
            "tradeoff", "evaluate", "generate", "ablation", "compare")

app = typer.Typer(
    help="Language-free text-to-image training: each command is one DVC stage (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Keeps `t2i <command>` a group when only one command is registered below."""


# Only the command being run is imported (all of them for --help or a typo): importing every stage
# pulls in torch, open_clip and torchvision, about 8 s on one core, which `t2i world` never needs.
_named = [arg for arg in sys.argv[1:2] if arg in COMMANDS]
for _name in _named or COMMANDS:
    app.command(_name)(importlib.import_module(f"stages.{_name}").main)
