"""Which CLIP weights the pipeline uses: a pretrained tag or file, or the one the clip stage trained."""

from __future__ import annotations

from pathlib import Path

from pipeline.clip.encoder import ClipEncoder
from pipeline.core.errors import UserError
from pipeline.core.params import ClipParams

TRAINED_CLIP = "clip.pt"  # inside the clip stage's output folder


def clip_weights(params: ClipParams, clip_dir: Path) -> str:
    """The pretrained tag or file in params, else the CLIP the clip stage trained."""
    if params.pretrained is not None:
        return params.pretrained
    path = Path(clip_dir) / TRAINED_CLIP
    if not path.is_file():
        raise UserError(f"{path}: no in-project CLIP; run the clip stage, or set clip.pretrained")
    return str(path)


def load_encoder(params: ClipParams, clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(params.model, clip_weights(params, clip_dir), params.precision, params.batch_size,
                            params.device)
