"""Benchmark: scoring referring classification (lvis_cls) end to end from predictions.

Builds an LVIS-sized synthetic set (default 1,000 images, ~4,000 regions, ~1,000 category
names) in Osprey's JSON layout, scores a predictions file with ``evalkit score``'s code path
(reader + SS + S-IoU + results.json), and times the reference loop (one
SentenceTransformer.encode per string, as lvis_paco_eval.py does) on a subset for the ratio.

Goal (issue 2): 4,000 regions in < 10 s on 2 CPU cores. Last line:
``scoring_seconds=<s>``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = [
    "red",
    "blue",
    "small",
    "large",
    "wooden",
    "metal",
    "glass",
    "paper",
    "round",
    "square",
    "soft",
    "hard",
    "old",
    "new",
    "car",
    "bus",
    "cup",
    "mug",
    "dog",
    "cat",
    "tree",
    "lamp",
    "sofa",
    "chair",
    "table",
    "bottle",
    "phone",
    "clock",
    "book",
    "shoe",
    "hat",
    "bag",
    "kite",
    "ball",
    "plate",
    "bowl",
    "fork",
    "knife",
    "spoon",
    "bird",
    "horse",
    "sheep",
    "boat",
    "train",
    "plane",
]


def build(folder: Path, n_images: int, n_categories: int, seed: int) -> tuple[Path, Path, int]:
    rng = random.Random(seed)
    names = sorted({"_".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(n_categories * 2)})
    names = names[:n_categories]
    records, preds = [], []
    for i in range(n_images):
        cats, anns = [], []
        for j in range(4):
            x, y = rng.randint(0, 400), rng.randint(0, 300)
            cats.append(rng.choice(names))
            anns.append({"segmentation": [[x, y, x + 30, y, x + 30, y + 40, x, y + 40]]})
            answer = cats[-1].replace("_", " ") if rng.random() < 0.5 else rng.choice(names).replace("_", " ")
            if rng.random() < 0.2:
                answer = f"The object is: {answer}."
            preds.append({"id": f"{i:012d}#{j}", "text": answer})
        records.append(
            {
                "file_name": f"{i:012d}.jpg",
                "height": 480,
                "width": 640,
                "categories": cats,
                "annotations": anns,
            }
        )
    ann, pred = folder / "ann.json", folder / "preds.jsonl"
    ann.write_text(json.dumps(records))
    pred.write_text("".join(json.dumps(p) + "\n" for p in preds))
    return ann, pred, len(preds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--reference-subset", type=int, default=300)
    args = parser.parse_args()
    from evalkit.tasks.referring_cls.referring_cls import normalise_answer, normalise_category
    from sentence_transformers import util

    from evalkit.engine.runner import score_file
    from evalkit.metrics.embeddings import minilm
    from evalkit.task import get_task

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ann, pred, n = build(folder, args.images, 1000, seed=0)
        task = get_task("lvis_cls")
        data = task.resolve_data({"annotations": str(ann)}, command="score")
        t0 = time.perf_counter()
        results = score_file(task, pred, data, folder / "out")
        seconds = time.perf_counter() - t0
        print(
            f"evalkit: {n} regions scored in {seconds:.2f} s ({n / seconds:.0f} regions/s), "
            f"SS {results.metrics['ss']:.2f} S-IoU {results.metrics['s_iou']:.2f}"
        )

        bert = minilm()._model
        rows = [json.loads(line) for line in pred.read_text().splitlines()][: args.reference_subset]
        cats = [c for r in json.loads(ann.read_text()) for c in r["categories"]]
        t0 = time.perf_counter()
        for row, cat in zip(rows, cats, strict=False):
            a = bert.encode(normalise_answer(row["text"]), convert_to_tensor=True)
            b = bert.encode(normalise_category(cat), convert_to_tensor=True)
            util.cos_sim(a, b)
        ref_rate = len(rows) / (time.perf_counter() - t0)
        print(f"reference loop (one encode per string): {ref_rate:.0f} regions/s on {len(rows)} regions")
        print(f"speedup_vs_reference_loop={n / seconds / ref_rate:.1f}")
        print(f"scoring_seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
