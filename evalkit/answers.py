"""The decoding clean-up the released eval scripts apply to a generated answer.

Osprey's scripts (``osprey/eval/*.py``) decode with ``skip_special_tokens=False`` and then
strip, drop a trailing ``</s>`` (the stop string of the ``vicuna_v1``/``osprey_v1``
conversation template) and strip again; some also keep only ``text.split(':')[1]``. One
copy here, so that every protocol cleans answers the same way.
"""

from __future__ import annotations

STOP_STR = "</s>"


def drop_stop(text: str) -> str:
    """``text`` without one trailing ``</s>`` (no stripping: POPE's parser sees the rest)."""
    return text[: -len(STOP_STR)] if text.endswith(STOP_STR) else text


def clean_decoded(text: str) -> str:
    """The decoding step every Osprey script applies: strip, drop ``</s>``, strip.

    Example:
        >>> clean_decoded(" Teddy bear.</s> ")
        'Teddy bear.'
    """
    return drop_stop(text.strip()).strip()


def colon_rule(text: str) -> str:
    """``text.split(':')[1]`` when a colon is present (the released scripts' truncation: the
    text between the first and second colon, kept on purpose).

    Example:
        >>> colon_rule("Category: cat: sitting")
        ' cat'
    """
    return text.split(":")[1] if ":" in text else text
