"""What every stage command shares: the params option and error reporting."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.errors import UserError

ParamsOption = Annotated[Path, typer.Option("--params", help="The params file to validate and read.")]


def user_errors(command: Callable) -> Callable:
    """Print a UserError as one clear line (no traceback) and exit with its code (2 for params)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N), for the stages that can run as N workers over disjoint shards."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise UserError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/4")
    return int(match[1]), int(match[2])
