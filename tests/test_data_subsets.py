"""`evalkit data prepare lvis-1k|paco-1k`: the cards' seeded 1,000-image subsets of raw LVIS v1 /
PACO-LVIS val in Osprey's layout — the same samples and regions as the raw file gives — with
one image folder over COCO train2017 + val2017."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from evalkit.cli import main
from evalkit.task import get_task
from tests.helpers import LVIS_NAMES, PACO_NAMES, polygon_square

N_IMAGES = 1500  # more eligible images than the 1,000 drawn


def write_raw(path: Path, names: list[str], paco: bool, seed: int = 0) -> dict[str, Any]:
    """Raw val JSON: images from train2017 and val2017 (LVIS: coco_url; PACO: file_name with
    its folder), 0-3 annotations each, some crowds, some images with none usable."""
    rng = random.Random(seed)
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(N_IMAGES):
        img_id = 500 + 3 * i
        split = "train2017" if i % 3 else "val2017"
        img: dict[str, Any] = {"id": img_id, "height": 24 + i % 7, "width": 30 + i % 5}
        if paco:
            img["file_name"] = f"{split}/{img_id:012d}.jpg"
        else:
            img["coco_url"] = f"http://images.cocodataset.org/{split}/{img_id:012d}.jpg"
        images.append(img)
        for _ in range(0 if i % 10 == 0 else rng.randint(1, 3)):
            s = rng.randint(3, 8)
            anns.append(
                {
                    "id": 10_000 + len(anns),
                    "image_id": img_id,
                    "category_id": rng.choice(cats)["id"],
                    "segmentation": polygon_square(rng.randint(0, 10), rng.randint(0, 10), s),
                    "iscrowd": int(rng.random() < 0.05),
                    "area": s * s,
                }
            )
    raw = {"images": images, "annotations": anns, "categories": cats}
    path.write_text(json.dumps(raw))
    return raw


def write_coco(root: Path, raw: dict[str, Any]) -> Path:
    """One tiny JPEG's bytes under every image's COCO split folder (sizes are not checked)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="JPEG")
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for img in raw["images"]:
        split, name = (img.get("coco_url") or img["file_name"]).split("/")[-2:]
        (root / split / name).write_bytes(buf.getvalue())
    return root


def samples(task: str, annotations: Path, images: Path | None = None) -> list[Any]:
    t = get_task(task)
    data = {"annotations": annotations, "images": images}
    return t.load_samples(data).samples


@pytest.mark.parametrize(("dataset", "task", "names", "paco"), [
    ("lvis-1k", "lvis_cls", LVIS_NAMES, False),
    ("paco-1k", "paco_cls", [*PACO_NAMES, "mug"], True),
])  # fmt: skip
def test_the_subset_is_the_raw_files_samples_in_osprey_layout(
    tmp_path: Path, dataset: str, task: str, names: list[str], paco: bool
) -> None:
    raw_path = tmp_path / "raw.json"
    raw = write_raw(raw_path, names, paco)
    coco = write_coco(tmp_path / "coco", raw)
    dest = tmp_path / "out"
    assert (
        main(["data", "prepare", dataset, str(raw_path), str(dest), "--coco", str(coco), "--no-progress"])
        == 0
    )
    prefix = dataset.split("-")[0]
    prepared = dest / f"{prefix}_val_1k_seed0.json"
    records = json.loads(prepared.read_text())
    assert len(records) == 1000
    assert [r["image_id"] for r in records] == sorted(r["image_id"] for r in records)
    assert all("/" not in r["file_name"] and len(r["categories"]) == len(r["annotations"]) for r in records)
    if paco:  # parts only, as paco_cls reads the raw file
        assert all(":" in c for r in records for c in r["categories"])

    from_raw = samples(task, raw_path)
    from_prepared = samples(task, prepared)
    assert len(from_raw) == len(from_prepared) > 1000
    by_image = {r["image_id"]: r for r in records}
    for a, b in zip(from_raw, from_prepared, strict=True):
        image_id, _ = a.id.split("/")
        stem, index = b.id.split("#")
        assert int(stem) == int(image_id) and by_image[int(image_id)]["file_name"] == b.image
        assert a.target == b.target and a.regions[0].to_json() == b.regions[0].to_json()
        del index

    # One image folder over both COCO splits, each link to the split the raw file names.
    for r in records[:50]:
        link = dest / "images" / r["file_name"]
        expected = "val2017" if ((r["image_id"] - 500) // 3) % 3 == 0 else "train2017"
        assert link.is_symlink() and link.resolve() == (coco / expected / r["file_name"]).resolve()
    assert len(list((dest / "images").iterdir())) == 1000

    # ... which is what the task's check needs: it can run (not on Osprey's subset: a warning).
    capsys_args = [
        "data",
        "check",
        task,
        f"--data=annotations={prepared}",
        f"--data=images={dest / 'images'}",
    ]
    assert main([*capsys_args, "--json"]) == 0


def test_another_seed_is_another_named_subset_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    raw_path = tmp_path / "raw.json"
    write_raw(raw_path, LVIS_NAMES, paco=False)
    dest = tmp_path / "out"
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(dest), "--no-progress"]) == 0
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(dest), "--seed", "3", "--no-progress"]) == 0
    seed0 = json.loads((dest / "lvis_val_1k_seed0.json").read_text())
    seed3 = json.loads((dest / "lvis_val_1k_seed3.json").read_text())
    assert {r["image_id"] for r in seed0} != {r["image_id"] for r in seed3}
    before = (dest / "lvis_val_1k_seed0.json").read_bytes()
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(dest), "--no-progress"]) == 0
    assert (dest / "lvis_val_1k_seed0.json").read_bytes() == before


def test_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    osprey = tmp_path / "osprey.json"
    osprey.write_text("[]")
    assert main(["data", "prepare", "lvis-1k", str(osprey), str(tmp_path / "o")]) == 2
    assert "expected a raw COCO-style file" in capsys.readouterr().err
    raw_path = tmp_path / "raw.json"
    raw = write_raw(raw_path, LVIS_NAMES, paco=False)
    coco = tmp_path / "coco"
    (coco / "train2017").mkdir(parents=True)
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(tmp_path / "o"), "--coco", str(coco)]) == 2
    assert "no val2017/" in capsys.readouterr().err
    write_coco(coco, raw)
    next((coco / "val2017").iterdir()).unlink()
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(tmp_path / "o"), "--coco", str(coco)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "subset images are in neither train2017/ nor val2017/" in err[0]
    assert main(["data", "prepare", "lvis-1k", str(raw_path), str(tmp_path / "o"), "--split", "train"]) == 2
    assert "lvis-1k takes no --split" in capsys.readouterr().err
    assert main(["data", "prepare", "coco-5k", str(raw_path), str(tmp_path / "o")]) == 2
    assert (
        "unknown dataset 'coco-5k' (known: ade20k, cityscapes, lvis-1k, paco-1k, refcocog)"
        in capsys.readouterr().err
    )
