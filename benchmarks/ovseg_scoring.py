"""Open-vocabulary segmentation scoring: evalkit vs the reference tools on the same inputs.

A synthetic ADE20K-val-sized set (default 2,000 images of 512x683, ~15 segments each, 150
classes of which 100 things; panoptic PNG + JSON, semantic PNGs, instance JSON, vocabulary)
and one answer per segment are generated once into ``--workdir``. Then, single process:

* evalkit: ``Task.load_samples`` + ``Task.score`` of ``ade20k_ovseg`` — answers -> classes,
  assembly, PQ / AP / mIoU reading the ground-truth files (what ``evalkit score`` does);
* reference: the same answers -> classes and assembly (evalkit's code, timed apart), then
  what detectron2's evaluators do with the outputs — prediction PNGs + panopticapi
  ``pq_compute_single_core``, RLE-encoded instances + pycocotools ``loadRes`` / ``COCOeval``,
  semantic maps + the SemSegEvaluator confusion matrix. (The reference's dense
  ``300 x H x W`` inference is not run: at this size it would dominate; leaving it out
  only makes the ratio smaller.)

Both must give the same numbers (1e-6). The last line is ``speedup_vs_reference_tools=<ratio>``.
Answers are embedded by a deterministic stand-in encoder unless ``--minilm`` (same cost both
sides: a few hundred distinct strings).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ovseg_reference import coco_ap, detectron2_miou  # noqa: E402
from ovseg_support import fake_encoder, make_dataset, make_predictions  # noqa: E402

KEYS = ("panoptic_json", "panoptic_root", "semantic_root", "instances_json", "vocabulary")


def dataset(workdir: Path, n_images: int) -> dict[str, Path]:
    root = workdir / f"ade_like_{n_images}"
    paths = {
        k: root / v
        for k, v in {
            "panoptic_json": "panoptic.json",
            "panoptic_root": "panoptic",
            "semantic_root": "semantic",
            "instances_json": "instances.json",
            "vocabulary": "vocabulary.txt",
        }.items()
    }
    if not (root / "DONE").exists():
        t = time.perf_counter()
        make_dataset(
            root,
            n_images=n_images,
            size=(512, 683),
            n_classes=150,
            n_things=100,
            segments=15,
            seed=0,
            crowd=False,
        )
        make_predictions(paths, root / "predictions.jsonl", seed=0)
        (root / "DONE").write_text("ok\n")
        print(f"generated {n_images} images in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return paths


def run_evalkit(paths: dict[str, Path], texts: dict[str, str]) -> tuple[dict[str, float], float]:
    from evalkit.task import get_task

    task = get_task("ade20k_ovseg")
    t = time.perf_counter()
    data = task.resolve_data({k: str(paths[k]) for k in KEYS}, "score")
    samples = task.load_samples(data).samples
    result = task.score(samples, texts, data)
    return result.metrics, time.perf_counter() - t


def run_reference(
    paths: dict[str, Path], texts: dict[str, str], encoder: object
) -> tuple[dict[str, float], float, float]:
    from evalkit.tasks.ovseg.coco_panoptic import load_panoptic_set, read_segment_map, read_vocabulary
    from panopticapi.evaluation import pq_compute_single_core
    from panopticapi.utils import id2rgb
    from PIL import Image
    from pycocotools import mask as mask_utils

    from evalkit.answers import clean_decoded
    from evalkit.metrics.ovseg_assembly import assemble, class_cosines

    # shared part: answers -> classes -> assembly (evalkit's code)
    t0 = time.perf_counter()
    pset = load_panoptic_set(paths["panoptic_json"], paths["panoptic_root"], "ade20k")
    n_classes = len(pset.categories)
    vocab = read_vocabulary(paths["vocabulary"], n_classes)
    keys = [f"{a.image_id}#{sid}" for a in pset.annotations for sid in a.sorted_ids.tolist()]
    cosines = class_cosines([clean_decoded(texts[k]) for k in keys], vocab.synonyms, encoder)  # type: ignore[arg-type]
    isthing = np.array([c.isthing for c in pset.categories])
    assembled, offset = [], 0
    for ann in pset.annotations:
        segmap = read_segment_map(pset, ann)
        n = len(segmap.ids)
        uncovered = int(segmap.index.size - segmap.counts[: segmap.n_queries].sum())
        assembled.append(
            assemble(
                cosines[offset : offset + segmap.n_queries],
                segmap.counts[: segmap.n_queries],
                isthing,
                uncovered,
            )
        )
        offset += n
    shared = time.perf_counter() - t0

    # what detectron2's evaluators + panopticapi + pycocotools do with those outputs
    t1 = time.perf_counter()
    ranked = [c.id for c in pset.categories]
    conf = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    results, pairs = [], []
    gt = json.loads(paths["panoptic_json"].read_text())
    gt_by_image = {a["image_id"]: a for a in gt["annotations"]}
    with tempfile.TemporaryDirectory() as tmp:
        for ann, out in zip(pset.annotations, assembled, strict=True):
            segmap = read_segment_map(pset, ann)  # the dense masks the model holds
            pan_lut = np.zeros(len(segmap.ids) + 1, dtype=np.int64)
            infos = []
            for seg in out.panoptic:
                pan_lut[seg.queries] = seg.id
                infos.append({"id": seg.id, "category_id": ranked[seg.class_index]})
            pan_map = pan_lut[segmap.index]
            Image.fromarray(id2rgb(pan_map)).save(Path(tmp) / ann.file_name)
            pairs.append(
                (
                    gt_by_image[ann.image_id],
                    {"image_id": ann.image_id, "file_name": ann.file_name, "segments_info": infos},
                )
            )
            for q, cls, score in zip(
                out.det_query.tolist(), out.det_class.tolist(), out.det_score.tolist(), strict=True
            ):
                mask = segmap.index == q if q < segmap.n_queries else np.zeros(segmap.index.shape, bool)
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                results.append(
                    {
                        "image_id": ann.image_id,
                        "category_id": ranked[cls],
                        "segmentation": rle,
                        "score": score,
                        "bbox": [0.0, 0.0, 0.0, 0.0],
                    }
                )
            sem_lut = np.zeros(len(segmap.ids) + 1, dtype=np.int64)
            sem_lut[: segmap.n_queries] = out.semantic_class
            pred = sem_lut[segmap.index]
            sem_gt = np.array(Image.open(paths["semantic_root"] / ann.file_name), dtype=np.int64)
            sem_gt[sem_gt == 255] = n_classes
            conf += np.bincount(
                (n_classes + 1) * pred.reshape(-1) + sem_gt.reshape(-1), minlength=conf.size
            ).reshape(conf.shape)
        categories = {el["id"]: el for el in gt["categories"]}
        with contextlib.redirect_stdout(io.StringIO()):
            stat = pq_compute_single_core(0, pairs, str(paths["panoptic_root"]), tmp, categories)
    pq = {
        name: stat.pq_average(categories, isthing=flag)[0]
        for name, flag in (("all", None), ("things", True), ("stuff", False))
    }
    for r in results:  # detectron2 drops boxes for segm so areas come from the masks
        r.pop("bbox")
    ap, ap50 = coco_ap(json.loads(paths["instances_json"].read_text()), results)
    miou = detectron2_miou(conf)
    tools = time.perf_counter() - t1
    metrics = {
        "pq": 100 * pq["all"]["pq"],
        "sq": 100 * pq["all"]["sq"],
        "rq": 100 * pq["all"]["rq"],
        "pq_th": 100 * pq["things"]["pq"],
        "pq_st": 100 * pq["stuff"]["pq"],
        "ap": 100 * ap,
        "ap50": 100 * ap50,
        "miou": 100 * miou,
    }
    return metrics, shared, tools


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "evalkit_ovseg_bench")
    parser.add_argument("--minilm", action="store_true", help="embed with all-MiniLM-L6-v2 (both sides)")
    args = parser.parse_args()
    paths = dataset(args.workdir, args.images)
    texts = {}
    for line in (paths["panoptic_json"].parent / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts[row["id"]] = row["text"]
    import evalkit.tasks.ovseg.ovseg as ovseg

    from evalkit.metrics.embeddings import minilm

    encoder = minilm() if args.minilm else fake_encoder
    if args.minilm:
        encoder([*set(texts.values())])  # model load + answer embeddings cached for both sides
    ovseg.minilm = lambda: encoder  # type: ignore[assignment]
    ours, t_ours = run_evalkit(paths, texts)
    ref, t_shared, t_tools = run_reference(paths, texts, encoder)
    n_segments = len(texts)
    print(f"images={args.images} segments={n_segments} size=512x683 classes=150")
    print(f"{'metric':8s} {'evalkit':>12s} {'reference':>12s}")
    worst = 0.0
    for name in ours:
        worst = max(worst, abs(ours[name] - ref[name]))
        print(f"{name:8s} {ours[name]:12.6f} {ref[name]:12.6f}")
    print(f"max_abs_difference={worst:.2e}")
    t_ref = t_shared + t_tools
    print(f"evalkit_seconds={t_ours:.2f}")
    print(
        f"reference_seconds={t_ref:.2f} (shared answers->classes+assembly {t_shared:.2f}"
        f" + tools {t_tools:.2f})"
    )
    if worst > 1e-6:
        print("NUMBERS DIFFER", file=sys.stderr)
        return 1
    print(f"speedup_vs_reference_tools={t_ref / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
