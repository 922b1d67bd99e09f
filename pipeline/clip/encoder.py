"""One CLIP encoder interface over open_clip.

Any open_clip model name works, plus the project's small configs in ``configs/``,
which are registered with open_clip when this module is imported. Weights come from an
open_clip tag (e.g. ``openai``), a local checkpoint file, or nothing (random init, for
training). Embeddings are L2-normalised float32 numpy arrays, one row per input, so the
embed cache never depends on the model's precision or device; ``checkpoint_id`` names
the weights for that cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.transforms.functional import to_pil_image

from pipeline.core.checksum import sha256_file
from pipeline.core.device import resolve_device
from pipeline.core.errors import UserError

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)

ImageInput = Image.Image | torch.Tensor


class ClipWeightsError(UserError, RuntimeError):
    """The requested CLIP weights cannot be had here; the message says how to supply them."""


def _how_to_supply(model: str, pretrained: str, problem: str) -> str:
    file = f"{model}-{pretrained}.pt" if "/" not in pretrained else "weights.pt"
    return (
        f"CLIP weights for model {model!r}, pretrained {pretrained!r}: {problem}.\n"
        f"To use them offline, on a machine with internet run\n"
        f"  python -c \"import open_clip, torch; m = open_clip.create_model('{model}', pretrained='{pretrained}'); "
        f"torch.save(m.state_dict(), '{file}')\"\n"
        f"copy {file} into this repository's weights/ folder and set clip.pretrained: weights/{file} in params.yaml "
        f"(or clip.pretrained: null to train the small offline CLIP)."
    )


def resolve_weights(model: str, pretrained: str | None) -> tuple[str | None, str]:
    """Return (the ``pretrained`` value for open_clip, checkpoint id).

    A tag is fetched here, before the model is built, so that an offline machine gets
    a ClipWeightsError instead of open_clip's generic RuntimeError.
    """
    if pretrained is None:
        return None, "random-init"
    tag = open_clip.get_pretrained_cfg(model, pretrained)
    if tag:
        try:
            path = open_clip.download_pretrained(tag)
        except Exception as error:  # network, hub and cache errors all mean "not available here"
            raise ClipWeightsError(_how_to_supply(model, pretrained, f"download failed ({error})")) from error
        return pretrained, sha256_file(path)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(model)
        problem = f"no such file, and not an open_clip tag of this model (its tags: {tags or 'none'})"
        raise ClipWeightsError(_how_to_supply(model, pretrained, problem))
    return str(path), sha256_file(path)


def inference_transform(model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """open_clip's own eval preprocessing for this model (resize to its image size, crop, normalise)."""
    return image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)


def to_pil(image: ImageInput) -> Image.Image:
    """Tensors go through PIL so both kinds of input get exactly the same preprocessing."""
    if isinstance(image, Image.Image):
        return image
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise TypeError(f"image tensors must be uint8 CxHxW with C = 1 or 3, got {image.dtype} {tuple(image.shape)}")
    return to_pil_image(image)


def _at_input_size(model: torch.nn.Module, images: Sequence[ImageInput] | torch.Tensor) -> bool:
    """A uint8 RGB batch already at the model's input size: open_clip's resize and crop are
    identities there (PIL returns a same-size resize unchanged)."""
    size = model.visual.preprocess_cfg["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
            and images.shape[1] == 3 and tuple(images.shape[2:]) == size)


def preprocess_images(model: torch.nn.Module, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
    """open_clip's eval preprocessing for ``model``, as a float batch (N, 3, S, S).

    A uint8 batch already at the input size skips the per-image PIL round trip and runs
    ToTensor + Normalize on the whole batch, the same float32 operations in the same order,
    so its pixels are bit-identical to the PIL path's (tests/test_clip.py checks).
    """
    if _at_input_size(model, images):
        cfg = model.visual.preprocess_cfg
        mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)
        return images.float().div(255).sub_(mean).div_(std)
    transform = inference_transform(model)
    return torch.stack([transform(to_pil(image)) for image in images])


class ClipEncoder:
    """A CLIP model with its preprocessing and tokenizer; embeds images and texts in batches."""

    def __init__(self, model: torch.nn.Module, model_name: str, checkpoint_id: str,
                 batch_size: int = 256, precision: str = "fp32") -> None:
        self.model = model.eval()
        self.model_name = model_name
        self.checkpoint_id = checkpoint_id
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.input_dtype = open_clip.get_input_dtype(precision)
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @classmethod
    def load(cls, model: str, pretrained: str | None, precision: str = "fp32",
             batch_size: int = 256, device: str = "auto") -> ClipEncoder:
        """Build ``model`` with weights from a tag, a file or random init (``pretrained=None``).

        ``precision`` applies on CUDA only; CPU runs fp32 (see pipeline/device.py).
        """
        torch_device = resolve_device(device)
        precision = precision if torch_device.type == "cuda" else "fp32"
        source, checkpoint_id = resolve_weights(model, pretrained)
        try:
            net = open_clip.create_model(model, pretrained=source, precision=precision, device=torch_device)
        except RuntimeError as error:  # a local file that does not fit the model; tags were checked above
            if source is None or open_clip.get_pretrained_cfg(model, source):
                raise
            raise ClipWeightsError(f"{source} does not hold weights for CLIP model {model!r}: {error}") from error
        return cls(net, model, checkpoint_id, batch_size, precision)

    @staticmethod
    def input_size(model: str) -> int:
        """The image side ``model`` reads, from its open_clip config."""
        config = open_clip.get_model_config(model)
        if config is None:
            raise UserError(f"{model!r}: not an open_clip model name nor a config in {CONFIG_DIR}")
        size = config["vision_cfg"]["image_size"]
        return size if isinstance(size, int) else size[0]

    @property
    def logit_scale(self) -> float:
        """The learned inverse temperature of the similarities (100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp())

    @torch.inference_mode()
    def embed_images(self, images: Sequence[ImageInput] | torch.Tensor) -> np.ndarray:
        """PIL images or uint8 CxHxW tensors (or one NxCxHxW tensor) -> (N, D) unit rows."""
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = preprocess_images(self.model, images[start:start + self.batch_size])
            out.append(self.model.encode_image(pixels.to(self.device, self.input_dtype)))
        return self._finish(out)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, 3, H, W) in [0, 1] -> (N, D) unit rows, differentiable in the images:
        what a generator trained through the (frozen) CLIP backpropagates into. Resized to the
        input size bilinearly, then normalised as the eval preprocessing does."""
        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(cfg["mean"], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        pixels = ((images - mean) / std).to(dtype=self.input_dtype)  # None: as it is (fp32)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, D) unit rows; open_clip's tokenizer truncates to the context length."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[start:start + self.batch_size]))
            out.append(self.model.encode_text(tokens.to(self.device)))
        return self._finish(out)

    def _finish(self, batches: list[torch.Tensor]) -> np.ndarray:
        if not batches:  # keep the width so empty splits still concatenate
            return np.zeros((0, self.embed_texts([""]).shape[1]), np.float32)
        return F.normalize(torch.cat(batches).float(), dim=-1).cpu().numpy()
