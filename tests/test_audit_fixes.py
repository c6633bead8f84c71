"""Issue 20: what the audits found, each with the case that failed before its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import tests.fake_adapter  # noqa: F401  (registers slowfake)
from evalkit.cards import SOURCES_FILE, CardCatalog
from evalkit.cli import main
from tests.bad_inputs import _good_records
from tests.helpers import write_images

REPO = Path(__file__).resolve().parents[1]


def test_every_download_page_names_a_real_task_and_data_key() -> None:
    catalog = CardCatalog()
    listed = 0
    for path in sorted((REPO / "tasks").glob(f"*/{SOURCES_FILE}")):
        for task, keys in yaml.safe_load(path.read_text()).items():
            loaded = catalog.load(task)
            assert loaded.family == path.parent.name, (path, task)
            assert set(keys) <= set(loaded.card.data), (path, task, set(keys) - set(loaded.card.data))
            listed += len(keys)
    assert listed > 40
    # Every file a real task needs to run has a page (the generated shapes files need none).
    for name in catalog.names():
        loaded = catalog.load(name)
        if loaded.card.is_group or loaded.family == "shapes":
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
