"""Caption scoring speed: METEOR + CIDEr-D on N regions with K references each.

    python benchmarks/caption_scoring.py [--regions 5000] [--refs 5] [--compare] [--repeat 3]

Prints seconds and regions/s for evalkit's scorer (PTB tokenizer + METEOR 1.5 + CIDEr-D) and,
with ``--compare``, for the same pipeline through pycocoevalcap's own classes (interleaved,
best of ``--repeat``) and the time ratio.
Goal: under 30 s for 5,000 regions x 5 references on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
import time

from evalkit.metrics.caption import score_captions

SUBJECTS = [
    "man", "woman", "boy", "girl", "dog", "cat", "car", "bus", "table", "chair", "plate",
    "umbrella", "horse", "giraffe",
]  # fmt: skip
COLOURS = ["red", "blue", "green", "white", "black", "yellow", "brown", "gray"]
PLACES = (
    "on the left",
    "on the right",
    "in the middle",
    "near the window",
    "behind the table",
    "next to the tree",
    "in the background",
    "at the front",
)


def caption(rng: random.Random) -> str:
    words = ["a", rng.choice(COLOURS), rng.choice(SUBJECTS)]
    if rng.random() < 0.7:
        words.append(rng.choice(PLACES))
    if rng.random() < 0.3:
        words += ["with a", rng.choice(COLOURS), rng.choice(SUBJECTS)]
    text = " ".join(words)
    return text.capitalize() + "." if rng.random() < 0.3 else text


def corpus(n: int, k: int, seed: int = 0) -> tuple[dict[str, list[str]], dict[str, str]]:
    rng = random.Random(seed)
    refs = {str(i): [caption(rng) for _ in range(k)] for i in range(n)}
    preds = {str(i): caption(rng) for i in range(n)}
    return refs, preds


def pycocoevalcap_pipeline(refs: dict[str, list[str]], preds: dict[str, str]) -> tuple[float, float]:
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({key: [{"caption": c} for c in v] for key, v in refs.items()})
    res = tokenizer.tokenize({key: [{"caption": preds[key]}] for key in refs})
    meteor, _ = Meteor().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return meteor * 100, cider * 100


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regions", type=int, default=5000)
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also time pycocoevalcap's classes")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is shown")
    args = parser.parse_args()
    refs, preds = corpus(args.regions, args.refs)

    ours = theirs = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        scores = score_captions(refs, preds, metrics=("meteor", "cider"))
        ours = min(ours, time.perf_counter() - start)
        if args.compare:
            start = time.perf_counter()
            meteor, cider = pycocoevalcap_pipeline(refs, preds)
            theirs = min(theirs, time.perf_counter() - start)
    print(
        f"evalkit: {args.regions} regions x {args.refs} refs: METEOR {scores.corpus['meteor']:.2f} "
        f"CIDEr {scores.corpus['cider']:.2f} in {ours:.2f} s ({args.regions / ours:.0f} regions/s)"
    )
    if args.compare:
        same = abs(meteor - scores.corpus["meteor"]) < 1e-9 and abs(cider - scores.corpus["cider"]) < 1e-9
        print(
            f"pycocoevalcap: METEOR {meteor:.2f} CIDEr {cider:.2f} in {theirs:.2f} s "
            f"({args.regions / theirs:.0f} regions/s); identical: {same}; "
            f"evalkit / pycocoevalcap time ratio {ours / theirs:.2f}"
        )


if __name__ == "__main__":
    main()
