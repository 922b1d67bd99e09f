"""Text alignment: how often a world's CLIP-free checker reads off a generated image the
attributes its prompt asked for, and the floor a prompt-blind generator would reach.

The attribute names come from the world (pipeline/worlds), so this stays world-agnostic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _accuracy(correct: pd.DataFrame) -> dict:
    """Share right per attribute (the columns of ``correct``) and for all at once, each with
    its 95% Wilson interval (``<name>_ci95``)."""
    out: dict = {}
    for name, right in [*((name, correct[name]) for name in correct), ("all", correct.all(axis=1))]:
        out[name] = float(right.mean())
        out[f"{name}_ci95"] = list(wilson_interval(int(right.sum()), len(right)))
    out["n"] = int(len(correct))
    return out


def alignment_accuracy(predicted: dict[str, Sequence] | pd.DataFrame, labels: pd.DataFrame, names: Sequence[str],
                       by: str | None = None) -> dict:
    """Per-attribute and all-at-once accuracy of checker predictions against prompt labels.

    Row i of ``predicted`` (the checker's output) is an image generated for row i of
    ``labels`` (the prompts' attribute columns ``names``, repeated per sample). An image where
    the checker found no object counts as wrong on every attribute, so garbage never scores by
    lucky guesses. ``by`` (e.g. ``wording``) adds the same figures per value of that column.
    """
    predicted = pd.DataFrame(predicted).reset_index(drop=True)
    labels = labels.reset_index(drop=True)
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labelled images")
    found = predicted["found"].astype(bool) if "found" in predicted else pd.Series(True, index=predicted.index)
    correct = pd.DataFrame({name: (predicted[name] == labels[name]) & found for name in names})
    out = _accuracy(correct)
    out["found"] = float(found.mean()) if len(found) else float("nan")
    if by is not None:
        out[f"by_{by}"] = {str(value): _accuracy(correct[labels[by] == value]) for value in sorted(labels[by].unique())}
    return out


def random_real_floor(real_labels: pd.DataFrame, prompt_labels: pd.DataFrame,
                      names: Sequence[str]) -> dict[str, float | int]:
    """Expected alignment accuracy of a "generator" that ignores the prompt and returns a
    random real image: per prompt, the share of real images that match its labels in the
    attribute columns ``names`` (one by one, and all at once), averaged over prompts. Exact,
    so no seed.
    """
    names = list(names)
    combos = real_labels[names].astype(str).agg("|".join, axis=1).value_counts(normalize=True)
    out: dict[str, float | int] = {}
    for name in names:
        share = real_labels[name].value_counts(normalize=True)
        out[name] = float(prompt_labels[name].map(share).fillna(0.0).mean())
    out["all"] = float(prompt_labels[names].astype(str).agg("|".join, axis=1).map(combos).fillna(0.0).mean())
    out["n_real"] = int(len(real_labels))
    return out


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial share (stays inside [0, 1], sane near 0 and 1)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def entropy_bits(values: Sequence[str], support: Sequence[str]) -> float:
    """Shannon entropy (bits) of the empirical distribution of ``values`` over ``support``."""
    counts = pd.Series(list(values)).value_counts().reindex(list(support), fill_value=0).to_numpy(float)
    if counts.sum() == 0:
        return float("nan")
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def named_alignment(predicted: dict[str, Sequence] | pd.DataFrame, labels: pd.DataFrame,
                    attributes: Mapping[str, Sequence[str]]) -> dict:
    """Alignment of samples whose prompts may name only some attributes (an empty label = unnamed).

    Only named attributes are scored: per attribute over the samples that name it, and
    ``named_all``, the share with every named attribute right, with its 95% Wilson interval.
    An image where the checker found no object is wrong on all. For each attribute, the
    entropy (bits) of what the checker read where the prompt left it unnamed says whether the
    generator spreads unnamed attributes (log2 of the value count at most) or collapses them.
    """
    predicted = pd.DataFrame(predicted).reset_index(drop=True)
    labels = labels.reset_index(drop=True)
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labelled images")
    found = predicted["found"].astype(bool) if "found" in predicted else pd.Series(True, index=predicted.index)
    out: dict = {"n": int(len(labels)), "found": float(found.mean()) if len(found) else float("nan")}
    all_right = found.copy()
    unnamed_entropy = {}
    for name, values in attributes.items():
        named = labels[name].astype(str) != ""
        right = (predicted[name] == labels[name]) & found
        all_right &= right | ~named
        if named.any():
            out[name] = float(right[named].mean())
        if (~named).any():
            unnamed_entropy[name] = {"bits": entropy_bits(predicted[name][~named], values),
                                     "max_bits": float(np.log2(len(values))), "n": int((~named).sum())}
    k = int(all_right.sum())
    out["named_all"] = k / len(labels) if len(labels) else float("nan")
    out["named_all_ci95"] = list(wilson_interval(k, len(labels)))
    out["unnamed_entropy"] = unnamed_entropy
    return out


def named_real_floor(real_labels: pd.DataFrame, prompt_labels: pd.DataFrame, names: Sequence[str]) -> float:
    """``named_all`` of a prompt-blind generator returning random real images: per prompt, the
    share of real images matching every attribute it names (empty = unnamed), averaged. Exact."""
    real = real_labels[list(names)].astype(str)
    shares = []
    for _, prompt in prompt_labels[list(names)].astype(str).iterrows():
        named = {name: value for name, value in prompt.items() if value != ""}
        match = np.ones(len(real), dtype=bool)
        for name, value in named.items():
            match &= (real[name] == value).to_numpy()
        shares.append(match.mean() if len(real) else float("nan"))
    return float(np.mean(shares)) if shares else float("nan")
