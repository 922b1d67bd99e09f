"""Faces captions for the in-project CLIP: random rewordings to train on (synonyms, framings,
and partial captions that name only some attributes, as real captions do), and fixed wordings
for the evaluation prompts and zero-shot scoring.

A caption names exactly the attributes it is given, as [age adjective] [race] [noun] with the
age and gender in the noun where English puts them there: ``{"age": "baby", "gender": "male",
"race": "indian"}`` reads "a photograph of an indian baby boy", ``{"race": "asian"}`` reads
"a photograph of an asian person". The first word of every option is the canonical one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.worlds.base import Attributes

# UTKFace's "other" is Hispanic, Latino and Middle Eastern: said as such, not as "other".
RACE_WORDS = {"asian": "asian", "black": "black", "indian": "indian", "other": "latino or middle eastern",
              "white": "white"}
AGE_ADJECTIVES = {"young adult": ("young",), "middle-aged": ("middle-aged",), "elderly": ("elderly", "old", "senior")}
ADULT_NOUNS = {"female": ("woman", "lady"), "male": ("man", "gentleman"), None: ("person",)}
# age (None: unnamed) -> gender (None: unnamed) -> the nouns; young children and teenagers are
# said in the noun ("a girl", "a teenage boy"), adults by an adjective before the race.
NOUNS: dict[str | None, dict[str | None, tuple[str, ...]]] = {
    "baby": {"female": ("baby girl", "infant girl"), "male": ("baby boy", "infant boy"), None: ("baby", "infant")},
    "child": {"female": ("girl",), "male": ("boy",), None: ("child", "kid")},
    "teenager": {"female": ("teenage girl", "teen girl"), "male": ("teenage boy", "teen boy"),
                 None: ("teenager", "teen")},
    "young adult": {**ADULT_NOUNS, None: ("adult", "person")},
    "middle-aged": ADULT_NOUNS,
    "elderly": ADULT_NOUNS,
    None: ADULT_NOUNS,
}
TRAIN_TEMPLATES = (
    "a photograph of {x}",
    "a photo of {x}",
    "a picture of {x}",
    "a portrait of {x}",
    "a close-up photo of {x}",
    "{x}",
    "a photo showing {x}",
    "the face of {x}",
)
# Sentence structures the CLIP never trains on, in words it knows (tests/test_faces_world.py
# checks both); each begins "a photograph", as the FFHQ protocol prefixes "a photograph of ".
NEW_TEMPLATES = (
    "a photograph showing {x}",
    "a photograph of the face of {x}",
    "a photograph of {x}, close-up",
    "a photograph, a portrait of {x}",
)


def _phrase(adjective: str, race: str, noun: str) -> str:
    """The noun phrase with its article: "an elderly white woman", "a man"."""
    words = " ".join(word for word in (adjective, race, noun) if word)
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _options(attributes: Attributes) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """The adjectives, race word and nouns that say exactly the given attributes."""
    age = attributes.get("age")
    adjectives = AGE_ADJECTIVES.get(age, ("",))
    race = RACE_WORDS[attributes["race"]] if "race" in attributes else ""
    return adjectives, race, NOUNS[age][attributes.get("gender")]


def reword(attributes: Attributes, rng: np.random.Generator) -> str:
    """A random training wording naming exactly the given attributes (a subset is a partial caption)."""
    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    adjectives, race, nouns = _options(attributes)
    return pick(TRAIN_TEMPLATES).format(x=_phrase(pick(adjectives), race, pick(nouns)))


def describe(attributes: Attributes, template: str) -> str:
    """One fixed wording with the canonical words, naming exactly the given attributes."""
    adjectives, race, nouns = _options(attributes)
    return template.format(x=_phrase(adjectives[0], race, nouns[0]))


def canonical(attributes: Attributes) -> str:
    """The caption the data carry: the canonical words in the canonical template."""
    return describe(attributes, TRAIN_TEMPLATES[0])
