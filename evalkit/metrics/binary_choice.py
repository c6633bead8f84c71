"""Closed-set binary choice scored from free text, as Ferret's LVIS evaluation does it
(apple/ml-ferret ``3c9e5c9``, ``ferret/eval/eval_lvis.py``; PROTOCOLS_WAVE2.md §C). SPHINX-V
Table 4 "followed the approach described in Ferret".

The released rule *is* the metric, quirks included:

* every span that starts at whitespace + ``not`` / ``no`` and runs to the next ``,`` or ``.``
  is deleted first (:func:`remove_not_phrases`) — also words that merely start with "no"
  (``" notebook."``), and an answer without a final ``,``/``.`` keeps its "not ..." clause;
* the answer is right when the GT name (``_`` -> space) or any synonym (``_`` -> space; a
  ``word_(gloss)`` synonym counts as ``word`` and ``gloss``) is a case-sensitive **substring**
  of what is left (``bus`` is found in ``school bus``, ``cat`` in ``catamaran``); the negative
  class is never looked at.

:func:`strict_choice` is evalkit's ``strict`` variant (non-reference): the answer, normalised,
must be exactly one of the two offered names.

Example (PROTOCOLS_WAVE2.md §P item 4):
    >>> ferret_correct("It is a notebook.", "notebook", [])
    False
    >>> ferret_correct("The object is a cat, not a dog.", "cat", []), ferret_correct(
    ...     "The object is a cat, not a dog.", "dog", [])
    (True, False)
    >>> ferret_correct("school bus.", "bus", [])
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

# "accuracy" (header, direction, tolerance) is declared by evalkit.metrics.pope.

_NOT = re.compile(r"\s+not[^,.]*[,.]")  # eval_lvis.py remove_not_phrases_v2, verbatim
_NO = re.compile(r"\s+no[^,.]*[,.]")
_ARTICLE = re.compile(r"^(?:it is |it's |this is )?(?:an? |the )?")


def remove_not_phrases(text: str) -> str:
    """``remove_not_phrases_v2``: the ``not`` spans, then the ``no`` spans, deleted."""
    return _NO.sub("", _NOT.sub("", text))


def ferret_synonyms(synonyms: Sequence[str]) -> list[str]:
    """The synonyms as ``eval_lvis.py`` rewrites them: ``_`` -> space, stripped; one with a
    ``(`` split there into the word and its gloss (``bow_(weapon)`` -> ``bow``, ``weapon``).

    Raises:
        ValueError: a synonym the released script's asserts reject (``(`` without ``)``, or
            more than one ``(``).
    """
    out: list[str] = []
    for synonym in synonyms:
        if "(" in synonym:
            parts = synonym.split("(")
            if ")" not in synonym or len(parts) != 2:
                raise ValueError(f"synonym {synonym!r}: eval_lvis.py asserts one '(' ... ')' pair")
            out.append(parts[0].replace("_", " ").strip())
            out.append(parts[1].replace("_", " ").replace(")", "").strip())
        else:
            out.append(synonym.replace("_", " ").strip())
    return out


def ferret_correct(text: str, name: str, synonyms: Sequence[str]) -> bool:
    """Ferret's per-answer rule: the name or a synonym is a substring of the answer after
    :func:`remove_not_phrases`."""
    processed = remove_not_phrases(text)
    gt = name.replace("_", " ").strip()
    return gt in processed or any(s in processed for s in ferret_synonyms(synonyms))


def normalise_choice(text: str) -> str:
    """Lower-cased, ``_`` -> space, whitespace collapsed, a leading "it is a"/article and
    trailing ``.``/``!`` removed (the ``strict`` variant's reading of an answer and a name)."""
    out = " ".join(text.replace("_", " ").lower().split()).rstrip(".!").strip()
    return _ARTICLE.sub("", out, count=1)


def strict_choice(text: str, name: str, negative: str) -> Literal["right", "negative", "neither"]:
    """Which offered name the answer is, exactly after :func:`normalise_choice`.

    >>> strict_choice("It is a dog.", "dog", "cat"), strict_choice("hot dog", "dog", "cat")
    ('right', 'neither')
    """
    answer = normalise_choice(text)
    if answer == normalise_choice(name):
        return "right"
    if answer == normalise_choice(negative):
        return "negative"
    return "neither"


def choice_accuracy_percent(correct: Sequence[bool]) -> float:
    """Per cent right (``eval_lvis.py``: ``total_correct / len(predictions)``); 0 for none."""
    return 100.0 * sum(correct) / len(correct) if correct else 0.0
