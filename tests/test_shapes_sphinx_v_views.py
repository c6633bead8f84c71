"""The shapes benchmark's SPHINX-V views: shapes_roc (all of an image's regions in one
question) and shapes_binary_choice (Ferret's "Is it A or B?"), read from the same cls.json
as shapes_cls, and osprey-tiny running on both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalkit.tasks.sphinx_v.ferret_lvis import FerretChoice
from evalkit.tasks.sphinx_v.sphinx_v_json import SphinxVQuestion

from evalkit.cli import main
from evalkit.task import get_task


def _cls_regions() -> dict[str, list[tuple[str, tuple[float, float, float, float]]]]:
    task = get_task("shapes_cls")
    by_image: dict[str, list[tuple[str, tuple[float, float, float, float]]]] = {}
    for s in task.load_samples(task.resolve_data({}, "run")).samples:
        by_image.setdefault(str(s.image), []).append((str(s.target), s.regions[0].box_xyxy()))
    return by_image


def test_shapes_roc_is_one_record_per_image_with_its_regions_boxes() -> None:
    task = get_task("shapes_roc")
    samples = task.load_samples(task.resolve_data({}, "run")).samples
    by_image = _cls_regions()
    assert len(samples) == len(by_image) == 200
    assert sum(len(s.regions) for s in samples) == 948
    for s in samples:
        regions = by_image[str(s.image)]
        assert s.target == "\n".join(f"Region {i}: {c}" for i, (c, _) in enumerate(regions, 1))
        assert [r.box for r in s.regions] == [b for _, b in regions]  # the masks' tight boxes
        assert (
            s.info(SphinxVQuestion).question
            == "Please identify the labels of each marked region in the image."
        )
    requests = task.build_requests(samples)
    assert max(len(r.regions) for r in requests) <= 10
    assert all(r.prompt.count("<region>") == len(r.regions) for r in requests)


def test_shapes_binary_choice_offers_a_seeded_negative_in_ferrets_order() -> None:
    task = get_task("shapes_binary_choice")
    first = task.load_samples(task.resolve_data({}, "run")).samples
    again = task.load_samples(task.resolve_data({}, "run")).samples
    assert len(first) == 948
    infos = [s.info(FerretChoice) for s in first]
    assert [i.neg_class for i in infos] == [s.info(FerretChoice).neg_class for s in again]  # seeded
    assert all(i.neg_class != i.name and "_" not in i.name for i in infos)
    requests = task.build_requests(first[:2])
    assert requests[0].prompt.endswith(
        f"Is it {infos[0].name} or {infos[0].neg_class}? Using only one word or phrase."
    )
    assert requests[1].prompt.endswith(
        f"Is it {infos[1].neg_class} or {infos[1].name}? Using only one word or phrase."
    )
    points = get_task("shapes_binary_choice", "point").build_requests(first[:1])
    x, y = infos[0].sample_point
    assert points[0].regions[0].points == ((x, y),)


@pytest.mark.slow
def test_osprey_tiny_runs_on_both_views(tmp_path: Path) -> None:
    common = ["run", "--model", "osprey-tiny"]
    assert (
        main([*common, "--task", "shapes_binary_choice", "--limit", "60", "--output", str(tmp_path / "c")])
        == 0
    )
    choice = json.loads((tmp_path / "c" / "results.json").read_text())
    assert choice["metrics"]["accuracy"] == pytest.approx(60.0) and choice["input"] == "box"
    assert main([*common, "--task", "shapes_roc", "--limit", "10", "--output", str(tmp_path / "r")]) == 0
    roc = json.loads((tmp_path / "r" / "results.json").read_text())
    # osprey-tiny was never trained to answer 'Region i: ...' lines: nothing to score
    assert (
        roc["metrics"]["n_gt_regions"] == 58 and roc["metrics"]["n_scored"] == 0 and roc["metrics"]["ss"] == 0
    )
