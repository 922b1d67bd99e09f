"""Train the small offline CLIP on (image, caption) pairs, and score any CLIP on held-out pairs.

No pretrained CLIP can be downloaded offline, so the shapes world trains its own with
open_clip's contrastive loss. Two choices matter on this data:
- Batches hold distinct captions. The world has only 180 attribute combinations, and the
  contrastive loss would score repeated captions in a batch as negatives of each other.
- Captions are reworded from the attribute columns (synonyms, word orders), because the
  text-to-image prompts later describe the same attributes in other words.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm import tqdm

from pipeline.atomic import atomic_file
from pipeline.clip import ClipEncoder, ImageInput, preprocess_images
from pipeline.device import autocast, resolve_device
from pipeline.params import ClipTrainParams
from pipeline.shapes import ATTRIBUTES, POSITION_PHRASES, ShapeSpec, caption

Attributes = Mapping[str, str]

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",)}
POSITION_WORDS = {
    "left": ("on the left", "on the left side", "at the left", "to the left"),
    "right": ("on the right", "on the right side", "at the right", "to the right"),
    "top": ("at the top", "near the top", "at the top of the image"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the image"),
    "centre": ("in the centre", "in the center", "in the middle"),
}
TRAIN_TEMPLATES = (
    "a {size} {colour} {shape} {position}",
    "a {colour} {size} {shape} {position}",
    "{position}, a {size} {colour} {shape}",
    "a {colour} {shape}, {size}, {position}",
    "there is a {size} {colour} {shape} {position}",
    "a {size} {shape} in {colour} {position}",
)
# Never trained on: zero-shot accuracy in these measures wordings the model has not seen.
NEW_TEMPLATES = (
    "a photo of a {size} {colour} {shape} {position}",
    "{position} there is a {colour} {shape} that is {size}",
)


def reword(attributes: Attributes, rng: np.random.Generator) -> str:
    """A random training wording of the same four attributes."""
    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    return pick(TRAIN_TEMPLATES).format(
        size=pick(SIZE_WORDS[attributes["size"]]), colour=attributes["colour"],
        shape=pick(SHAPE_WORDS[attributes["shape"]]), position=pick(POSITION_WORDS[attributes["position"]]))


def describe(attributes: Attributes, template: str) -> str:
    """One fixed wording with the canonical words (for evaluation prompts)."""
    return template.format(size=attributes["size"], colour=attributes["colour"], shape=attributes["shape"],
                           position=POSITION_PHRASES[attributes["position"]])


def attribute_combinations() -> list[dict[str, str]]:
    return [dict(zip(ATTRIBUTES, values)) for values in itertools.product(*ATTRIBUTES.values())]


# --- training ---------------------------------------------------------------------------

def _distinct_caption_batch(groups: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """One random example from each of ``size`` random distinct captions."""
    chosen = rng.choice(len(groups), size=min(size, len(groups)), replace=False)
    return np.array([groups[g][rng.integers(len(groups[g]))] for g in chosen])


def _optimizer(model: torch.nn.Module, params: ClipTrainParams) -> torch.optim.AdamW:
    """AdamW without weight decay on gains, biases and the temperature (as open_clip trains)."""
    def no_decay(name: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": params.weight_decay}]
    return torch.optim.AdamW(groups, lr=params.lr, betas=tuple(params.betas), fused=True)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def train_clip(model_name: str, images: Sequence[ImageInput] | torch.Tensor, captions: Sequence[str],
               attributes: Sequence[Attributes] | None, params: ClipTrainParams,
               device: str = "auto") -> tuple[torch.nn.Module, list[float]]:
    """Train ``model_name`` from random init; return the model (eval mode) and the loss per step.

    ``attributes`` (the shapes label columns, one mapping per image) enables rewording with
    probability ``params.augment_p``; without them the captions are used as given. All
    images are preprocessed once and kept in memory.
    """
    torch_device = resolve_device(device)
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    model = open_clip.create_model(model_name, device=torch_device)
    tokenizer = open_clip.get_tokenizer(model_name)
    pixels = preprocess_images(model, images)
    by_caption: dict[str, list[int]] = {}
    for index, text in enumerate(captions):
        by_caption.setdefault(text, []).append(index)
    groups = [np.array(indices) for indices in by_caption.values()]
    loss_fn = open_clip.ClipLoss()
    optimizer = _optimizer(model, params)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, params.warmup_steps, params.steps))

    model.train()
    losses = []
    for _ in (bar := tqdm(range(params.steps), desc="clip", unit="step")):
        index = _distinct_caption_batch(groups, params.batch_size, rng)
        texts = [reword(attributes[i], rng) if attributes is not None and rng.random() < params.augment_p
                 else captions[i] for i in index]
        batch = pixels[torch.from_numpy(index)].to(torch_device)
        with autocast(torch_device):
            image_features, text_features, scale = model(batch, tokenizer(texts).to(torch_device))[:3]
            loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # open_clip's cap on the temperature
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return model.eval(), losses


def save_checkpoint(model: torch.nn.Module, path: str | Path) -> None:
    """A {"state_dict": ...} file, which open_clip loads as ``pretrained=<path>``; written atomically."""
    with atomic_file(path) as tmp:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)


# --- evaluation -------------------------------------------------------------------------

def _miss_probability(n: int, m: np.ndarray, k: int) -> np.ndarray:
    """P(none of m relevant items among the first k of a random order of n) = C(n-m, k) / C(n, k)."""
    miss = np.ones(len(m))
    for j in range(min(k, n)):
        miss *= np.clip((n - m - j) / (n - j), 0, None)
    return miss


def retrieval_accuracy(image_emb: np.ndarray, text_emb: np.ndarray, captions: Sequence[str],
                       ks: Sequence[int] = (1, 5)) -> dict:
    """Top-k retrieval among N held-out pairs (row i of both arrays is pair i).

    Captions repeat (180 combinations in the shapes world), so retrieval counts a caption,
    not an index:
    - text->image: each pair's caption ranks the N images; a hit@k when one of the k most
      similar images carries that same caption. Averaged over the N pairs.
      Chance: mean over pairs of 1 - C(N-m, k)/C(N, k), m = images with that caption.
    - image->text: each image ranks the U distinct captions; a hit@k when its own caption is
      among the k most similar. Chance: k/U.
    With unique captions both reduce to the usual definitions (chance k/N).
    """
    unique, first, inverse = np.unique(np.asarray(captions), return_index=True, return_inverse=True)
    sims = text_emb[first] @ image_emb.T  # (U, N)
    own = inverse[None, :] == np.arange(len(unique))[:, None]
    best_own_image = np.where(own, sims, -np.inf).max(axis=1)
    t2i_rank = (sims > best_own_image[:, None]).sum(axis=1)[inverse]  # images ranked above the first hit
    i2t_rank = (sims.T > sims[inverse, np.arange(len(inverse))][:, None]).sum(axis=1)
    multiplicity = np.bincount(inverse)[inverse]
    n, u = len(inverse), len(unique)
    report: dict = {"n_pairs": n, "n_captions": u, "text_to_image": {}, "image_to_text": {}}
    for k in ks:
        report["text_to_image"][f"top{k}"] = float(np.mean(t2i_rank < k))
        report["text_to_image"][f"chance_top{k}"] = float(np.mean(1 - _miss_probability(n, multiplicity, k)))
        report["image_to_text"][f"top{k}"] = float(np.mean(i2t_rank < k))
        report["image_to_text"][f"chance_top{k}"] = min(k / u, 1.0)
    return report


def zero_shot_accuracy(image_emb: np.ndarray, labels: Sequence[Attributes], prompt_emb: np.ndarray,
                       combos: Sequence[Attributes], logit_scale: float) -> dict:
    """Attribute accuracy by full-caption marginalisation.

    Each image gets P(combination) = softmax(logit_scale * cosine) over one prompt per
    attribute combination; an attribute's prediction is the value with the largest marginal
    probability. "all" counts images with every attribute right. Chance is 1/len(values)
    (1/len(combos) for "all").
    """
    logits = torch.from_numpy(logit_scale * image_emb @ prompt_emb.T).double()  # (N, C)
    report: dict = {"accuracy": {}, "chance": {}}
    all_right = np.ones(len(labels), dtype=bool)
    for name in ATTRIBUTES:
        values = sorted({combo[name] for combo in combos})
        member = torch.tensor([[combo[name] == value for combo in combos] for value in values])  # (V, C)
        marginal = torch.logsumexp(logits[:, None, :].masked_fill(~member, -math.inf), dim=-1)  # (N, V)
        predicted = np.array(values)[marginal.argmax(dim=1).numpy()]
        right = predicted == np.array([label[name] for label in labels])
        all_right &= right
        report["accuracy"][name] = float(right.mean())
        report["chance"][name] = 1 / len(values)
    report["accuracy"]["all"] = float(all_right.mean())
    report["chance"]["all"] = 1 / len(combos)
    return report


def _prompt_embeddings(encoder: ClipEncoder, combos: Sequence[Attributes], templates: Sequence[str]) -> np.ndarray:
    """Mean of the unit embeddings over the templates (CLIP's prompt ensembling), renormalised."""
    mean = np.mean([encoder.embed_texts([describe(c, t) for c in combos]) for t in templates], axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def evaluate_clip(encoder: ClipEncoder, images: Sequence[ImageInput] | torch.Tensor, captions: Sequence[str],
                  attributes: Sequence[Attributes] | None = None) -> dict:
    """The reports/clip.json metrics: retrieval on the captions as given and, with the shapes
    attribute columns, zero-shot attribute accuracy for canonical and never-trained wordings."""
    image_emb = encoder.embed_images(images)
    report = {"model": encoder.model_name, "checkpoint": encoder.checkpoint_id,
              "retrieval": retrieval_accuracy(image_emb, encoder.embed_texts(captions), captions)}
    if attributes is not None:
        combos = attribute_combinations()
        canonical = encoder.embed_texts([caption(ShapeSpec(**c)) for c in combos])
        report["zero_shot"] = zero_shot_accuracy(image_emb, attributes, canonical, combos, encoder.logit_scale)
        report["zero_shot_new_wording"] = zero_shot_accuracy(
            image_emb, attributes, _prompt_embeddings(encoder, combos, NEW_TEMPLATES), combos, encoder.logit_scale)
    return report
