"""The judge's messages, exactly as the released LLaVA-style review scripts build them.

User content (LLaVA ``eval_gpt_review``, Osprey ``eval_gpt.py``, Ferret
``eval_gpt_review_3newclass.py``, MDVP ``eval_gpt.py``)::

    [Context]\\n{context}\\n\\n[Question]\\n{question}\\n\\n[{role} 1]\\n{reference}\\n\\n
    [End of {role} 1]\\n\\n[{role} 2]\\n{model}\\n\\n[End of {role} 2]\\n\\n[System]\\n{rule}\\n\\n

The released scripts write ``f'[Context]\\{...}'``: Python keeps the backslash of the invalid
escape and ``{`` opens the field, so the judge actually read ``[Context]\\`` followed directly
by the context, without a newline. ``reference_quirk=True`` reproduces that byte for byte.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import load_json

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."


def review_content(
    context: str,
    question: str,
    reference_answer: str,
    model_answer: str,
    rule_prompt: str,
    role: str = "Assistant",
    reference_quirk: bool = False,
) -> str:
    opening = "[Context]\\" if reference_quirk else "[Context]\n"
    return (
        f"{opening}{context}\n\n"
        f"[Question]\n{question}\n\n"
        f"[{role} 1]\n{reference_answer}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{model_answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule_prompt}\n\n"
    )


def png_data_url(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def judge_messages(
    content: str, image_png: bytes | None = None, detail: str = "high"
) -> list[dict[str, Any]]:
    """System + user message; with an image, the user content is [text, image] as in MDVP."""
    user: Any = content
    if image_png is not None:
        user = [
            {"type": "text", "text": content},
            {"type": "image_url", "image_url": {"url": png_data_url(image_png), "detail": detail}},
        ]
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def load_rules(path: Path) -> dict[str, dict[str, str]]:
    """A ``rule.json``: ``{category: {role, prompt}}``. MDVP's released file ends its object
    with a trailing comma (invalid JSON); that one defect is tolerated, nothing else."""
    try:
        raw = load_json(path)
    except DataError:
        text = path.read_text("utf-8") if path.is_file() else None
        if text is None:
            raise
        try:
            raw = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(raw, dict):
        raise DataError(path, "a rule file is an object {category: {role, prompt}}")
    for category, rule in raw.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("prompt"), str):
            raise DataError(path, "rule needs a 'prompt' string", category)
        if not isinstance(rule.get("role", "Assistant"), str):
            raise DataError(path, "rule 'role' must be a string", category)
    return raw


def rule_for(rules: dict[str, dict[str, str]], category: str, path: Path) -> tuple[str, str]:
    if category not in rules:
        raise DataError(path, f"no rule for category {category!r} (has {sorted(rules)})")
    rule = rules[category]
    return rule.get("role", "Assistant"), rule["prompt"]
