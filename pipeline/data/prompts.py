"""Loading an evaluation prompts file (a world builds its own prompt set: pipeline/worlds).

A prompts file is a CSV with a ``prompt`` column (other columns are labels, such as a
world's attributes), or a plain text file with one prompt per line. An optional prefix
("a photograph of ") is prepended on load, as in the FFHQ evaluation protocol.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.core.errors import UserError


def load_prompts(path: str | Path, prefix: str = "") -> pd.DataFrame:
    """A frame with a ``prompt`` column (prefixed) and any label columns."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompts file not found")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, keep_default_na=False)
        if "prompt" not in frame.columns:
            raise UserError(f"{path}: a prompts CSV needs a 'prompt' column")
    else:
        lines = [line.strip() for line in path.read_text().splitlines()]
        frame = pd.DataFrame({"prompt": [line for line in lines if line and not line.startswith("#")]})
    if frame.empty:
        raise UserError(f"{path}: holds no prompts")
    frame["prompt"] = prefix + frame["prompt"].astype(str)
    return frame
