"""The faces world's attributes, read from UTKFace's labels: age in years becomes one of six
words, gender and race stay as the data name them."""

from __future__ import annotations

import bisect

AGES = ("baby", "child", "teenager", "young adult", "middle-aged", "elderly")
AGE_UPPER_YEARS = (2, 12, 19, 39, 59)  # the last year of each bucket but the oldest
GENDERS = ("female", "male")
RACES = ("asian", "black", "indian", "other", "white")  # UTKFace's "other": Hispanic, Latino, Middle Eastern
ATTRIBUTES: dict[str, tuple[str, ...]] = {"age": AGES, "gender": GENDERS, "race": RACES}


def age_bucket(years: int) -> str:
    """0-2 baby, 3-12 child, 13-19 teenager, 20-39 young adult, 40-59 middle-aged, 60+ elderly."""
    if years < 0:
        raise ValueError(f"age {years}: must be >= 0")
    return AGES[bisect.bisect_left(AGE_UPPER_YEARS, years)]
