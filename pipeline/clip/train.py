"""Train the small offline CLIP on (image, caption) pairs, and score any CLIP on held-out pairs.

No pretrained CLIP can be downloaded offline, so a world (pipeline/worlds) trains its own
with open_clip's contrastive loss. Two choices matter on such data:
- Batches hold distinct captions. The shapes world has only 180 attribute combinations, and
  the contrastive loss would score repeated captions in a batch as negatives of each other.
- Captions are reworded from the attribute columns by the world (synonyms, word orders),
  because the text-to-image prompts later describe the same attributes in other words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm import tqdm

from pipeline.clip.encoder import ClipEncoder, ImageInput, preprocess_images
from pipeline.core.atomic import atomic_file
from pipeline.core.device import autocast, resolve_device
from pipeline.core.params import ClipTrainParams
from pipeline.core.rng import seed_everything
from pipeline.core.training import clip_gradients, lr_at, make_adamw, set_lr
from pipeline.worlds.base import Attributes, World


def _labelled(attributes: Sequence[Attributes] | None, world: World | None) -> bool:
    """Whether attribute columns were given; they mean something only with their world."""
    if (attributes is None) != (world is None):
        raise ValueError("attributes and their world come together, or not at all")
    return world is not None


# --- training ---------------------------------------------------------------------------

def _distinct_caption_batch(groups: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """One random example from each of ``size`` random distinct captions."""
    chosen = rng.choice(len(groups), size=min(size, len(groups)), replace=False)
    return np.array([groups[g][rng.integers(len(groups[g]))] for g in chosen])


def train_clip(model_name: str, images: Sequence[ImageInput] | torch.Tensor, captions: Sequence[str],
               attributes: Sequence[Attributes] | None, params: ClipTrainParams,
               device: str = "auto", world: World | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Train ``model_name`` from random init; return the model (eval mode) and the loss per step.

    ``attributes`` (the ``world``'s label columns, one mapping per image) enable rewording
    with probability ``params.augment_p``; without them the captions are used as given. All
    images are preprocessed once and kept in memory.
    """
    reworded = _labelled(attributes, world)
    torch_device = resolve_device(device)
    seed_everything(params.seed)
    rng = np.random.default_rng(params.seed)
    model = open_clip.create_model(model_name, device=torch_device)
    tokenizer = open_clip.get_tokenizer(model_name)
    pixels = preprocess_images(model, images)
    by_caption: dict[str, list[int]] = {}
    for index, text in enumerate(captions):
        by_caption.setdefault(text, []).append(index)
    groups = [np.array(indices) for indices in by_caption.values()]
    loss_fn = open_clip.ClipLoss()
    optimizer = make_adamw(model, params.optim)

    model.train()
    losses = []
    for step in (bar := tqdm(range(params.steps), desc="clip", unit="step")):
        index = _distinct_caption_batch(groups, params.batch_size, rng)
        texts = [world.reword(attributes[i], rng) if reworded and rng.random() < params.augment_p
                 else captions[i] for i in index]
        batch = pixels[torch.from_numpy(index)].to(torch_device)
        with autocast(torch_device):
            image_features, text_features, scale = model(batch, tokenizer(texts).to(torch_device))[:3]
            loss = loss_fn(image_features, text_features, scale)
        set_lr(optimizer, lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps, cosine=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, params.optim.grad_clip)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # open_clip's cap on the temperature
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return model.eval(), losses


def save_clip(model: torch.nn.Module, path: str | Path) -> None:
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
    for name in combos[0]:  # the attribute names, in the world's order
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


def _prompt_embeddings(encoder: ClipEncoder, world: World, combos: Sequence[Attributes],
                       templates: Sequence[str]) -> np.ndarray:
    """Mean of the unit embeddings over the templates (CLIP's prompt ensembling), renormalised."""
    mean = np.mean([encoder.embed_texts([world.describe(c, t) for c in combos]) for t in templates], axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def evaluate_clip(encoder: ClipEncoder, images: Sequence[ImageInput] | torch.Tensor, captions: Sequence[str],
                  attributes: Sequence[Attributes] | None = None, world: World | None = None) -> dict:
    """The reports/clip.json metrics: retrieval on the captions as given and, with a world's
    attribute columns, zero-shot attribute accuracy for canonical and never-trained wordings."""
    image_emb = encoder.embed_images(images)
    report = {"model": encoder.model_name, "checkpoint": encoder.checkpoint_id,
              "retrieval": retrieval_accuracy(image_emb, encoder.embed_texts(captions), captions)}
    if _labelled(attributes, world):
        combos = world.attribute_combinations()
        canonical = encoder.embed_texts([world.caption(c) for c in combos])
        report["zero_shot"] = zero_shot_accuracy(image_emb, attributes, canonical, combos, encoder.logit_scale)
        new_wording = _prompt_embeddings(encoder, world, combos, world.new_templates)
        report["zero_shot_new_wording"] = zero_shot_accuracy(image_emb, attributes, new_wording, combos,
                                                             encoder.logit_scale)
    return report
