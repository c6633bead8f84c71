"""How SPHINX-V's released scorers read ``Region i: ...`` answers, restated literally.

Draw-and-Understand ``28a1bd1`` (PROTOCOLS_WAVE2.md §B, §D, §G):

* :func:`roc_lines` — ``Referring_Object_Classification/ROC_eval.py``
  ``extract_categories_from_string``: ``[line.split(": ")[1] for line in s.strip().split("\\n")
  if ": " in line]``. Positional: a line without ``": "`` is dropped and shifts every later
  one; only the second ``": "``-piece is kept (``a: b: c`` -> ``b``).
* :func:`ocr_targets` / :func:`ocr_answers` — ``Regional_OCR/OCR_eval.py``
  ``extract_region_texts`` (GT: ``split('\\n')``, then ``split(': ')[1]`` of every line that
  has one) and ``extract_text_in_parentheses`` (model output: the regex below, a
  parenthesised text preferred, an empty match -> ``BLANK``; a line counts only if a
  ``\\n`` ends it).
* :func:`caption_lines` — ``Region_Level_Captioning/coco-caption/transfer_to_cococap_format.py``
  ``re.findall(r'Region \\d+: (.*?)\\n', text)``: a caption not followed by ``\\n`` is lost.

Example:
    >>> roc_lines("Region 1: bow (weapon)\\nsome note\\nRegion 2: dog")
    ['bow (weapon)', 'dog']
    >>> ocr_answers("Region 1: STOP (sign)\\nRegion 2: \\nRegion 3: EXIT")
    ['sign', 'BLANK']
    >>> caption_lines("Region 1: a red car\\n")
    ['a red car']
"""

from __future__ import annotations

import re

OCR_ANSWER = re.compile(r"Region \d+: .*?\((.*?)\)\n|Region \d+: (.*?)\n")  # OCR_eval.py, verbatim
CAPTION_LINE = re.compile(r"Region \d+: (.*?)\n")  # transfer_to_cococap_format.py, verbatim
BLANK = "BLANK"


def roc_lines(text: str) -> list[str]:
    """``extract_categories_from_string`` (ROC_eval.py): the second ``": "`` piece of every
    line that has one, in order."""
    return [line.split(": ")[1] for line in text.strip().split("\n") if ": " in line]


def ocr_targets(annotation: str) -> list[str]:
    """``extract_region_texts`` (OCR_eval.py): a GT text containing ``": "`` is cut there."""
    texts = []
    for region in annotation.split("\n"):
        parts = region.split(": ")
        if len(parts) > 1:
            texts.append(parts[1])
    return texts


def ocr_answers(answer: str) -> list[str]:
    """``extract_text_in_parentheses`` (OCR_eval.py): per matched line the parenthesised text
    (first alternative) or the whole text (second); an empty one is ``BLANK``."""
    out = []
    for match in OCR_ANSWER.findall(answer):
        key = next(filter(None, match), BLANK)
        out.append(key if key else BLANK)
    return out


def caption_lines(text: str) -> list[str]:
    """``extract_region_descriptions`` (transfer_to_cococap_format.py)."""
    return CAPTION_LINE.findall(text)


def with_final_newline(text: str) -> str:
    """``text`` ending in ``\\n`` (evalkit's default before the OCR and caption regexes: the
    released ones lose a last line that has none, PROTOCOLS_WAVE2.md §D)."""
    return text if text.endswith("\n") else text + "\n"
