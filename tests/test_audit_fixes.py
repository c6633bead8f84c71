"""Issue 20: what the audits found, each with the case that failed before its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import tests.fake_adapter  # noqa: F401  (registers slowfake)
from evalkit.cli import main
from tests.bad_inputs import _good_records
from tests.helpers import write_images

REPO = Path(__file__).resolve().parents[1]


def test_every_download_page_names_a_real_task_and_data_key() -> None:
    from evalkit.cards import SOURCES_FILE, CardCatalog

    catalog = CardCatalog()
    listed = 0
    for path in sorted((REPO / "tasks").glob(f"*/{SOURCES_FILE}")):
        for task, keys in yaml.safe_load(path.read_text()).items():
            loaded = catalog.load(task)
            assert loaded.family == path.parent.name, (path, task)
            assert set(keys) <= set(loaded.card.data), (path, task, set(keys) - set(loaded.card.data))
            listed += len(keys)
    assert listed > 40
    # Every file an Osprey-era task needs to run has a page (the generated shapes files need
    # none; the wave-2 families, merged alongside, have no data_sources.yaml yet).
    osprey_era = set(json.loads((REPO / "tests" / "layout_before_move.json").read_text())["card_sha256"])
    for name in catalog.names():
        loaded = catalog.load(name)
        if loaded.card.is_group or loaded.family == "shapes" or name not in osprey_era:
            continue
        needed = {k for k, spec in loaded.card.data.items() if spec.needed_for}
        assert needed <= set(loaded.data_sources), (name, needed - set(loaded.data_sources))


def test_lvis_images_from_two_coco_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A5: LVIS v1 val draws on COCO train2017 and val2017; images=TRAIN:VAL finds each."""
    records = _good_records()
    (tmp_path / "ann.json").write_text(json.dumps(records))
    write_images(tmp_path / "train2017", records[:2])
    write_images(tmp_path / "val2017", records[2:])
    images = f"{tmp_path / 'train2017'}{os.pathsep}{tmp_path / 'val2017'}"
    args = ["run", "--model", "slowfake", "--model-args", "decode=1", "--task", "lvis_cls"]
    args += ["--data", f"annotations={tmp_path / 'ann.json'}", "--data", f"images={images}"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    paths = {r["id"]: r["sample"]["image_path"] for r in rows}
    assert paths["img0#0"] == str(tmp_path / "train2017" / "img0.jpg")
    assert paths["img2#1"] == str(tmp_path / "val2017" / "img2.jpg")
    # A folder that does not exist is named before anything runs.
    bad = f"{tmp_path / 'train2017'}{os.pathsep}{tmp_path / 'nope'}"
    assert main([*args[:-1], f"images={bad}", "--output", str(tmp_path / "o2")]) == 2
    assert "images=" in capsys.readouterr().err


def test_degenerate_polygons_are_rasterised_as_pycocotools_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A6: pycocotools (Osprey's annToMask) rasterises an odd-length polygon without its last
    number and a later polygon of < 3 points as nothing; evalkit refused both."""
    import numpy as np
    from pycocotools import mask as mask_utils

    records = _good_records()
    tri = [10, 10, 30, 10, 30, 30]
    records[0]["annotations"][0]["segmentation"] = [tri, [2, 2, 9, 9]]  # + a 2-point polygon
    records[1]["annotations"][0]["segmentation"] = [[10, 10, 30, 10, 30, 30, 10, 30, 20]]  # odd
    (tmp_path / "ann.json").write_text(json.dumps(records))
    write_images(tmp_path / "images", records)
    args = [
        "run",
        "--model",
        "slowfake",
        "--task",
        "lvis_cls",
        "--data",
        f"annotations={tmp_path / 'ann.json'}",
    ]
    args += ["--data", f"images={tmp_path / 'images'}", "--output", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    note = next(n for n in results["provenance"]["notes"] if "degenerate polygons" in n)
    assert note.startswith("2 annotation(s) with degenerate polygons")
    assert "#0 (img0.jpg) annotation 0: polygon(s) [1] with [4] coordinates" in note
    rows = {
        json.loads(x)["id"]: json.loads(x)
        for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    }
    for sid, seg in (
        ("img0#0", [tri, [2, 2, 9, 9]]),
        ("img1#0", records[1]["annotations"][0]["segmentation"]),
    ):
        expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, 40, 50)))
        from evalkit.regions import Region

        got = Region.from_json(rows[sid]["sample"]["regions"][0]).to_mask()
        assert np.array_equal(got, expected) and got.sum() > 0


@pytest.mark.parametrize(
    ("seg", "expect"),
    [
        ([[1, 1, 5, 5]], "polygon 0 has 4 coordinates"),  # pycocotools takes it for a box, then fails
        ([[1, 1, 5]], "polygon 0 has 3 coordinates"),
        ([], "empty polygon list"),
        ([[10, 10, float("nan"), 10, 30, 30]], "not a finite number"),
        ([[10, 10, 1e12, 10, 30, 30]], "far outside"),
        ([[10, 10, -1e9, 10, 30, 30]], "far outside"),
    ],
)
def test_polygons_the_reference_cannot_read_stay_clear_errors(seg: list, expect: str) -> None:
    from evalkit.regions import Region, RegionError

    with pytest.raises(RegionError, match=expect):
        Region.from_polygons(seg, 40, 50)


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda R: R.from_box([0, 0, float("inf"), 5], 40, 50), "box has a coordinate that is not a finite"),
        (lambda R: R.from_box([float("nan"), 0, 5, 5], 40, 50), "not a finite"),
        (
            lambda R: R.from_points([[float("nan"), 3]], 40, 50),
            "point 0 has a coordinate that is not a finite",
        ),
        (lambda R: R.from_box([0, 0, 5, 5], 10**9, 50), "exceeds 65536 pixels a side"),
    ],
)
def test_boxes_points_and_sizes_are_validated(make: object, expect: str) -> None:
    from evalkit.regions import Region, RegionError

    with pytest.raises(RegionError, match=expect):
        make(Region)  # type: ignore[operator]
