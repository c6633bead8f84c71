"""pycocoevalcap as its users call it, for parity tests (one reference METEOR JVM per session)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def coco_meteor() -> Any:
    """pycocoevalcap's own ``Meteor`` (a JVM), shared by the test modules of one session."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def pycocoevalcap_scores(refs: dict[str, list[str]], preds: dict[str, str]) -> dict[str, Any]:
    """PTBTokenizer, then each scorer (x100): corpus scores, per-item scores, tokens."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tokenizer.tokenize({k: [{"caption": preds[k]}] for k in refs})
    m, m_items = coco_meteor().compute_score(gts, res)
    c, c_items = Cider().compute_score(gts, res)
    b, b_items = Bleu(4).compute_score(gts, res, verbose=0)
    r, r_items = Rouge().compute_score(gts, res)
    keys = list(gts)
    return {
        "corpus": {"meteor": m * 100, "cider": c * 100, "bleu4": b[3] * 100, "rouge_l": r * 100},
        "items": {
            k: {
                "meteor": m_items[i] * 100,
                "cider": c_items[i] * 100,
                "bleu4": b_items[3][i] * 100,
                "rouge_l": r_items[i] * 100,
            }
            for i, k in enumerate(keys)
        },
        "tokens": {k: res[k][0] for k in keys},
    }
