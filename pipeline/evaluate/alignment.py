"""Text alignment: how often a world's CLIP-free checker reads off a generated image the
attributes its prompt asked for, and the floor a prompt-blind generator would reach.

The attribute names come from the world (pipeline/worlds), so this stays world-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def _accuracy(correct: pd.DataFrame) -> dict[str, float | int]:
    """Share right per attribute (the columns of ``correct``) and for all at once."""
    out: dict[str, float | int] = {name: float(correct[name].mean()) for name in correct}
    out["all"] = float(correct.all(axis=1).mean())
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
