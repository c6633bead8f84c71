"""The closed-set shapes views: shapes_region_cls and shapes_rec_candidates read files the
shapes generator's scenes are written into (COCO instances, refer-toolkit refs, proposals),
and osprey-tiny runs both on CPU, the AP from its own generated-token log-probabilities."""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
from pathlib import Path

import pytest
from evalkit.tasks.closed_set.proposals import load_proposals
from evalkit.tasks.closed_set.refer_candidates import RecCandidates
from evalkit.tasks.shapes.coco_view import ensure_coco_view
from evalkit.tasks.shapes.scenes import all_categories, category_phrase

from evalkit.cli import main
from evalkit.task import get_task


def test_the_shapes_files_are_coco_and_refer_formats() -> None:
    from pycocotools.coco import COCO

    view = ensure_coco_view("val")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(view.instances))
    names = [category_phrase(c) for c in all_categories()]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == names
    anns = coco.loadAnns(coco.getAnnIds())
    cls = get_task("shapes_cls").load_samples({}).samples
    assert len(anns) == len(cls) == 948 and min(a["id"] for a in anns) > 0
    assert all(a["area"] == int(coco.annToMask(a).sum()) for a in anns[:50])
    refs = pickle.loads(view.refs.read_bytes())
    by_image: dict[int, list[int]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a["category_id"])
    # A ref only where its category is the only one of its kind in the image.
    assert all(by_image[r["image_id"]].count(r["category_id"]) == 1 for r in refs)
    assert len(refs) == 728 and {r["split"] for r in refs} == {"val"}
    proposals = load_proposals(view.proposals)
    assert set(proposals) == set(by_image)
    assert all(len(proposals[i]) >= len(c) + 1 for i, c in by_image.items())  # + stray boxes


def test_the_views_samples() -> None:
    region = get_task("shapes_region_cls").load_samples({}).samples
    assert [s.target for s in region] == [
        category_phrase(str(s.target)) for s in get_task("shapes_cls").load_samples({}).samples
    ]
    rec = get_task("shapes_rec_candidates").load_samples({})
    assert len(rec.samples) == 728
    infos = [s.info(RecCandidates) for s in rec.samples]
    assert 0 < sum(i.gt_injected for i in infos) < len(infos)  # the jitter misses sometimes
    assert all(len(s.regions) == len(i.candidates) >= 1 for s, i in zip(rec.samples, infos, strict=True))
    assert any(len(i.candidates) == 1 for i in infos)  # single-candidate prompts occur
    assert rec.notes[0] == "shapes v1 val"


@pytest.mark.slow
def test_osprey_tiny_runs_shapes_region_cls_with_ap_from_its_log_probabilities(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "run"
    assert main(["run", "--model", "osprey-tiny", "--task", "shapes_region_cls", "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == results["n"] == 948
    view = ensure_coco_view("val")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(view.instances))
    cat_of = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    dets = []
    for row in rows:
        assert row["generation"]["logprobs"] is True
        assert "".join(row["token_texts"]) == row["text"] and len(row["token_texts"]) == len(
            row["token_logprobs"]
        )
        assert row["token_texts"][-1] == "" and row["token_ids"][-1] == 2  # the stop token adds no text
        name = row["text"].strip().lower()
        if name in cat_of:
            image_id, ann_id = (int(v) for v in row["id"].split("/"))
            bbox = coco.loadAnns(ann_id)[0]["bbox"]
            p = math.exp(
                sum(lp for t, lp in zip(row["token_texts"], row["token_logprobs"], strict=True) if t)
            )
            dets.append({"image_id": image_id, "category_id": cat_of[name], "bbox": bbox, "score": p})
    assert results["counts"]["detections"] == len(dets) and "constant_scores" not in results["counts"]
    assert len({d["score"] for d in dets}) > 100  # real probabilities, not a constant
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert results["metrics"]["ap"] == pytest.approx(100 * ev.stats[0], abs=1e-9)
    assert results["metrics"]["ap50"] == pytest.approx(100 * ev.stats[1], abs=1e-9)
    assert results["metrics"]["acc"] > 80 and results["metrics"]["ap"] > 70  # trained on these names
    assert results["score"] == "generated"


@pytest.mark.slow
def test_osprey_tiny_runs_shapes_rec_candidates(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--model",
                "osprey-tiny",
                "--task",
                "shapes_rec_candidates",
                "--limit",
                "24",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 24 and set(results["metrics"]) == {"acc@0.5", "oracle@0.5", "candidates"}
    assert results["metrics"]["oracle@0.5"] == 100.0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    samples = {s.id: s for s in get_task("shapes_rec_candidates").load_samples({}).samples}
    for row in rows:
        n = len(samples[row["id"]].regions)
        assert row["prompt"].count("<mask><pos>") == n
        assert ("<mask><pos> and <mask><pos>" in row["prompt"]) == (n > 1)
