"""Load torch files without running code from them.

A pickle can call any function while it loads, so a model or checkpoint file from someone
else could run code on this machine. Every file here is read with ``weights_only=True``:
tensors and plain containers (dicts, lists, numbers, strings) load, anything else is
refused with an error that names the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from pipeline.core.errors import UserError


class UnsafeFileError(UserError):
    """The file holds Python objects beyond tensors and plain containers."""


def _culprit(error: Exception) -> str:
    """torch's line naming the refused object, without its advice to turn the check off."""
    lines = [line for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    return lines[0].strip() if lines else type(error).__name__


def load_tensors(path: str | Path, what: str) -> Any:
    """``torch.load`` of ``path`` (``what`` it should be, for the error) onto the CPU, refusing code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no {what} file here")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"{path}: refused to load this {what}: it holds Python objects other than tensors and plain "
            f"containers, which could run code when unpickled. Use a file this project wrote, or re-save its "
            f"state_dict. ({_culprit(error)})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise UserError(f"{path}: not a readable {what} file ({type(error).__name__}: {error})") from None
