"""Pretrain the small offline CLIP on a world's own captioned renders, and score any CLIP.

No pretrained CLIP can be downloaded offline, so a world (pipeline/worlds) trains its own,
elsewhere: on renders of its own seed, disjoint from every image the tokenizer and generator
see, covering every attribute combination, as a real CLIP has seen the words. Choices that
make it behave like one (DESIGN.md, "The modality gap"; reports/clip.json measures it):
- Captions are partial as real ones are: with probability ``partial_p`` one names a random
  one to n-1 of the attributes ("a red circle"), and they are reworded by the world.
- A caption is positive for every image in the batch it describes, so the contrastive loss
  never pushes "a red circle" away from a second red circle (targets are spread evenly over
  the matches). Batches hold one image per distinct attribute combination.
- The inverse temperature starts at OpenAI CLIP's final 100: at that temperature matched
  pairs need only beat mismatched ones, not meet, so the two modalities stay apart as in a
  real CLIP (matched cosine about 0.4) while zero-shot accuracy stays near 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm import tqdm

from pipeline.clip.encoder import ClipEncoder, ImageInput, preprocess_images
from pipeline.core.atomic import atomic_file
from pipeline.core.device import autocast, resolve_device
from pipeline.core.live import TrainingLog
from pipeline.core.params import ClipTrainParams
from pipeline.core.rng import seed_everything
from pipeline.core.training import clip_gradients, lr_at, make_adamw, set_lr
from pipeline.generator.pseudo_text import ABLATION, ConditionMeans, inference_condition, perturb, setting_name
from pipeline.worlds.base import Attributes, World


def _labelled(attributes: Sequence[Attributes] | None, world: World | None) -> bool:
    """Whether attribute columns were given; they mean something only with their world."""
    if (attributes is None) != (world is None):
        raise ValueError("attributes and their world come together, or not at all")
    return world is not None


# --- training ---------------------------------------------------------------------------

def _one_per_combination(groups: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """One random example from each of ``size`` random distinct attribute combinations."""
    chosen = rng.choice(len(groups), size=min(size, len(groups)), replace=False)
    return np.array([groups[g][rng.integers(len(groups[g]))] for g in chosen])


def _caption_attributes(attributes: Attributes, partial_p: float, rng: np.random.Generator) -> dict[str, str]:
    """All attributes, or with probability ``partial_p`` a random one to n-1 of them."""
    names = list(attributes)
    if len(names) < 2 or rng.random() >= partial_p:
        return dict(attributes)
    named = sorted(rng.choice(len(names), size=rng.integers(1, len(names)), replace=False))
    return {names[j]: attributes[names[j]] for j in named}


def attribute_codes(rows: Sequence[Attributes], world: World) -> np.ndarray:
    """(N, A) index of each row's value of each of the world's attributes; -1 where a row (a
    partial caption's) does not name the attribute."""
    return np.array([[values.index(row[name]) if name in row else -1 for name, values in world.attributes.items()]
                     for row in rows])


def caption_matches(image_codes: np.ndarray, caption_codes: np.ndarray) -> torch.Tensor:
    """(B, B) bool: caption j describes image i, every attribute it names equal to the image's
    (both as from ``attribute_codes``)."""
    agrees = (image_codes[:, None, :] == caption_codes[None]) | (caption_codes[None] < 0)
    return torch.from_numpy(agrees.all(-1))


class TokenCache:
    """A tokenizer's rows, each caption tokenised once: a world has few distinct captions, and
    tokenising them anew each step costs as much as a fifth of a faces CLIP step's forward."""

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        self.tokenizer, self.rows = tokenizer, {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if new:
            self.rows.update(zip(new, self.tokenizer(new)))
        return torch.stack([self.rows[t] for t in texts])


def multi_positive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor,
                        matches: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss whose targets spread evenly over every matching pair.

    ``matches[i, j]`` says caption j describes image i (the diagonal always does). With only
    the diagonal this is open_clip's ClipLoss.
    """
    logits = scale * image_features @ text_features.T
    targets = matches.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(targets.T / targets.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def train_clip(model_name: str, images: torch.Tensor, attributes: Sequence[Attributes], world: World,
               params: ClipTrainParams, device: str = "auto",
               log: TrainingLog | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Train ``model_name`` from random init on uint8 ``images`` (N, 3, H, W) labelled with the
    ``world``'s attributes; return the model (eval mode) and the loss per step, each step also
    logged to ``log`` with its learning rate and temperature.

    Captions are written per step from the attributes (module docstring). All images are
    preprocessed once and kept in memory.
    """
    torch_device = resolve_device(device)
    seed_everything(params.seed)
    rng = np.random.default_rng(params.seed)
    model = open_clip.create_model(model_name, device=torch_device)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(params.logit_scale))
    model.logit_scale.requires_grad_(params.learn_logit_scale)
    tokenize = TokenCache(open_clip.get_tokenizer(model_name))
    pixels = preprocess_images(model, images)
    codes = attribute_codes(attributes, world)
    by_combination: dict[tuple[str, ...], list[int]] = {}
    for index, labels in enumerate(attributes):
        by_combination.setdefault(tuple(labels[name] for name in world.attributes), []).append(index)
    groups = [np.array(indices) for indices in by_combination.values()]
    canonical_template = world.train_templates[0]
    optimizer = make_adamw(model, params.optim)

    model.train()
    losses = []
    if log is not None:
        log.begin(0, [])
    for step in (bar := tqdm(range(params.steps), desc="clip", unit="step")):
        index = _one_per_combination(groups, params.batch_size, rng)
        named = [_caption_attributes(attributes[i], params.partial_p, rng) for i in index]
        texts = [world.reword(n, rng) if rng.random() < params.augment_p else world.describe(n, canonical_template)
                 for n in named]
        matches = caption_matches(codes[index], attribute_codes(named, world)).to(torch_device)
        batch = pixels[torch.from_numpy(index)].to(torch_device)
        with autocast(torch_device):
            image_features, text_features, scale = model(batch, tokenize(texts).to(torch_device))[:3]
            loss = multi_positive_loss(image_features, text_features, scale, matches)
        set_lr(optimizer, lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps, cosine=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, params.optim.grad_clip)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # open_clip's cap on the temperature
        losses.append(loss.item())
        if log is not None:
            log.row({"step": step + 1, "loss": losses[-1], "lr": optimizer.param_groups[0]["lr"],
                     "logit_scale": model.logit_scale.exp().item()})
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


def modality_gap(image_emb: np.ndarray, text_emb: np.ndarray, captions: Sequence[str]) -> dict[str, float]:
    """How far apart a CLIP keeps its two modalities, over N (image, caption) pairs (unit rows).

    OpenAI's ViT-B/32 gives a matched cosine near 0.3 and centroids about 0.8 apart (DESIGN.md).
    Mismatched pairs and the text-text mean count only pairs with different captions.
    """
    labels = np.asarray(captions)
    different = labels[:, None] != labels[None, :]
    sims = image_emb @ text_emb.T
    others = ~np.eye(len(image_emb), dtype=bool)
    return {"matched_cosine": float(np.mean(np.sum(image_emb * text_emb, axis=1))),
            "mismatched_cosine": float(sims[different].mean()),
            "image_image_cosine": float((image_emb @ image_emb.T)[others].mean()),
            "text_text_cosine": float((text_emb @ text_emb.T)[different].mean()),
            "centroid_distance": float(np.linalg.norm(image_emb.mean(0) - text_emb.mean(0))),
            "n_pairs": int(len(labels))}


def pseudo_text_cosines(image_emb: np.ndarray, text_emb: np.ndarray, settings: Sequence[tuple[str, float]],
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """Per pseudo-text setting, the mean cosine of the pseudo embeddings of N images to the
    condition the generator trains on (the image's, noise-free) and to the condition their
    captions give at inference: how far the noise reaches towards the text."""
    means = ConditionMeans(image=torch.from_numpy(image_emb.mean(0)), text=torch.from_numpy(text_emb.mean(0)))
    images, texts = torch.from_numpy(image_emb), torch.from_numpy(text_emb)
    out = {}
    for mode, scale in settings:
        generator = torch.Generator().manual_seed(seed)
        pseudo = perturb(images, mode, scale, generator, means)
        clean = perturb(images, mode, 0.0, None, means)
        at_inference = inference_condition(texts, mode, means)
        out[setting_name(mode, scale)] = {"to_image": float((pseudo * clean).sum(1).mean()),
                                          "to_caption": float((pseudo * at_inference).sum(1).mean())}
    return out


def evaluate_clip(encoder: ClipEncoder, images: Sequence[ImageInput] | torch.Tensor, captions: Sequence[str],
                  attributes: Sequence[Attributes] | None = None, world: World | None = None) -> dict:
    """The reports/clip.json metrics: retrieval and the modality gap on the captions as given,
    the pseudo-text settings measured against them and, with a world's attribute columns,
    zero-shot attribute accuracy for canonical and never-trained wordings."""
    image_emb = encoder.embed_images(images)
    text_emb = encoder.embed_texts(captions)
    report = {"model": encoder.model_name, "checkpoint": encoder.checkpoint_id,
              "retrieval": retrieval_accuracy(image_emb, text_emb, captions),
              "gap": {**modality_gap(image_emb, text_emb, captions),
                      "pseudo_text": pseudo_text_cosines(image_emb, text_emb, ABLATION)}}
    if _labelled(attributes, world):
        combos = world.attribute_combinations()
        canonical = encoder.embed_texts([world.caption(c) for c in combos])
        report["zero_shot"] = zero_shot_accuracy(image_emb, attributes, canonical, combos, encoder.logit_scale)
        new_wording = _prompt_embeddings(encoder, world, combos, world.new_templates)
        report["zero_shot_new_wording"] = zero_shot_accuracy(image_emb, attributes, new_wording, combos,
                                                             encoder.logit_scale)
    return report
