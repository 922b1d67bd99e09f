"""What every stage command shares: the params option and error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import UserError

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
