"""A card's region_kind: the regions a model is shown are converted before any adapter,
seeded per region, free-form from one stream, recorded per prediction; data-given points and
boxes are used as given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalkit.cards import CardCatalog
from evalkit.cli import main
from evalkit.errors import ConfigError
from evalkit.records import Request
from evalkit.regions import Region
from evalkit.regions.convert import free_form_box, seeded_point
from evalkit.shown_regions import RegionShown, region_seed, show_regions
from evalkit.task import Task, get_task


def _mask_region(h: int = 20, w: int = 30) -> Region:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[4:10, 5:17] = 1
    return Region.from_mask(mask)


def _requests(regions: list[Region], ids: tuple[str, ...] = ("b", "a")) -> list[Request]:
    return [Request(i, i, None, "<image>\n<region>?", list(regions), {}) for i in ids]


def test_box_is_the_tight_box_and_recorded() -> None:
    (req, _) = show_regions(_requests([_mask_region()]), RegionShown.parse("box"))
    assert req.regions[0].kind == "box" and req.regions[0].box == (5.0, 4.0, 17.0, 10.0)
    assert [c.note() for c in req.conversions] == ["mask -> box (tight box of the region's pixels)"]


def test_point_is_a_seeded_foreground_pixel_whatever_else_runs() -> None:
    region = _mask_region()
    shown = RegionShown.parse("point", seed=7)
    out = show_regions(_requests([region], ("b", "a")), shown)
    alone = show_regions(_requests([region], ("a",)), shown)
    # request a's point is the same whether b ran or not (a --limit, a shard, a resume)
    assert out[1].regions[0].points == alone[0].regions[0].points
    expected = seeded_point(region.to_mask(), region_seed(7, "a", 0))
    assert alone[0].regions[0].points == (expected,)
    x, y = expected
    assert region.to_mask()[int(y), int(x)] == 1
    assert alone[0].conversions[0].seed == region_seed(7, "a", 0)


def test_regions_the_data_gives_as_points_are_never_resampled() -> None:
    given = Region.from_points([(3.0, 4.0)], 20, 30)
    (req,) = show_regions(_requests([given], ("a",)), RegionShown.parse("points"))
    assert req.regions[0] == given and req.conversions[0].method == "as given"


def test_free_form_boxes_come_from_one_stream_in_request_id_order() -> None:
    box = Region.from_box((2.0, 3.0, 18.0, 11.0), 20, 30)
    out = show_regions(_requests([box], ("b", "a")), RegionShown.parse("box", "free_form", seed=0))
    rng = np.random.RandomState(0)
    first = free_form_box((2.0, 3.0, 16.0, 8.0), rng)  # request "a" draws first
    second = free_form_box((2.0, 3.0, 16.0, 8.0), rng)
    by_id = {r.id: r.regions[0].box for r in out}

    def clipped(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x, y, w, h = b
        x1, y1 = min(max(x, 0.0), 29.0), min(max(y, 0.0), 19.0)
        return (x1, y1, min(max(x + w, x1 + 1), 30.0), min(max(y + h, y1 + 1), 20.0))

    assert by_id["a"] == clipped(first) and by_id["b"] == clipped(second)


def test_card_values_are_checked_when_the_card_loads(tmp_path: Path) -> None:
    text = (CardCatalog().files["shapes_cls"].text).replace("name: shapes_cls", "name: my_cls")
    folder = tmp_path
    (folder / "my_cls.yaml").write_text(text + "region_kind: polygon\n")
    with pytest.raises(ConfigError, match="my_cls.yaml: region_kind 'polygon'"):
        Task(CardCatalog([folder]).load("my_cls"))
    (folder / "my_cls.yaml").write_text(text + "region_kind: point\nregion_method: nearest\n")
    with pytest.raises(ConfigError, match="region_method 'nearest'"):
        Task(CardCatalog([folder]).load("my_cls"))
    (folder / "my_cls.yaml").write_text(text + "region_kind: point\nregion_seed: 3\n")
    task = Task(CardCatalog([folder]).load("my_cls"))
    assert task.shown == RegionShown("points", None, 3)


def test_without_region_kind_requests_are_exactly_as_before() -> None:
    task = get_task("shapes_cls")
    assert task.shown is None
    samples = task.load_samples({}).samples[:3]
    requests = task.build_requests(samples)
    assert all(r.conversions == () and r.regions == s.regions for r, s in zip(requests, samples, strict=True))
    boxed = get_task("shapes_cls", region=RegionShown.parse("box")).build_requests(samples)
    assert all(r.regions[0].kind == "box" for r in boxed)
    assert boxed[0].payload_digest() != requests[0].payload_digest()  # new regions, new key


@pytest.mark.parametrize("kind", ["box", "point"])
def test_osprey_tiny_on_shapes_cls_shown_boxes_or_points_records_the_conversion(
    tmp_path: Path, kind: str
) -> None:
    out = tmp_path / kind
    args = ["run", "--model", "osprey-tiny", "--task", "shapes_cls", "--limit", "6", "--output", str(out)]
    assert main([*args, "--region-kind", kind]) == 0
    results = json.loads((out / "results.json").read_text())
    sent = {"box": "box", "point": "points"}[kind]
    method = {"box": "tight box of the region's pixels", "point": "seeded uniform foreground pixel"}[kind]
    assert results["input"] == sent and results["region_shown"] == {"kind": sent, "method": None, "seed": 0}
    assert results["region_conversions"] == {f"mask -> {sent} ({method})": 6}
    assert results["model_input"] == ["mask"]  # Osprey takes masks: the engine drew the box/point
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert row["meta"]["shown_regions"][0]["sent"] == sent
    assert row["meta"]["region_conversions"] == [f"region 0: {sent} -> mask"]


def test_a_card_in_an_include_folder_fixes_the_region_kind(tmp_path: Path) -> None:
    text = CardCatalog().files["shapes_cls"].text.replace("name: shapes_cls", "name: shapes_cls_box")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "shapes_cls_box.yaml").write_text(text + "region_kind: box\n")
    out = tmp_path / "run"
    args = ["--include", str(tmp_path / "cards"), "run", "--model", "osprey-tiny", "--task", "shapes_cls_box"]
    assert main([*args, "--limit", "4", "--output", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["input"] == "box"
