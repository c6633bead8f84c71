"""leaderboards/baselines.yaml: schema, and every number checked against the papers' text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.report.baselines import Baselines, default_path, load_baselines
from evalkit.report.boards import builtin_boards

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "leaderboards" / "baselines.yaml"
KNOWN_METRICS = {
    *(f"relative_score/{domain}" for domain in ("natural", "ocr", "multipanel", "screenshot")),
    *(f"relative_score/{category}" for category in ("conv", "detail", "complex")),  # LLaVA-Bench
    "ss",
    "s_iou",
    "pq",
    "ap",
    "miou",
    "meteor",
    "cider",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "yes_ratio",
    "relative_score",
    "acc",
    "ap_s",
    "ap_m",
    "ap_l",
    "acc@0.5",
    "map",
    "ap50",
    "mask_recall",
    "ciou",
    "q2a",  # VCR
    "qa2r",
    "q2ar",
}


@pytest.fixture(scope="module")
def baselines() -> Baselines:
    return load_baselines(BASELINES)


@pytest.fixture(scope="module")
def seeds(shared_dir: Path) -> Path:
    """The papers' text (``shared/seeds``) the baselines were transcribed from."""
    path = shared_dir / "seeds"
    if not path.is_dir():
        pytest.skip(f"{path} not present (the papers' text the baselines are checked against)")
    return path


def _numbers(fields: list[str]) -> list[float | None]:
    out: list[float | None] = []
    for f in fields:
        try:
            out.append(float(f.strip()))
        except ValueError:
            out.append(None)
    return out


def test_default_path_is_the_repo_file() -> None:
    assert default_path() == BASELINES


def test_entries_are_well_formed(baselines: Baselines) -> None:
    assert len(baselines.entries) >= 190
    board_tasks = set().union(*(b.tasks() for b in builtin_boards()))
    for e in baselines.entries:
        assert set(e.metrics) <= KNOWN_METRICS, e
        assert e.task in board_tasks, f"{e.task} is on no board"
        assert all(0 <= v <= 200 for v in e.metrics.values()), e
    # No (paper, table, model, input, task, split, metrics) twice: a duplicated row is a typo
    # (MDVP's domains are metrics of one task: relative_score/natural... one entry each).
    keys = [
        (e.paper, e.table, e.model, e.input, e.task, e.split, *sorted(e.metrics)) for e in baselines.entries
    ]
    assert len(keys) == len(set(keys))


# Spot checks, typed by hand from the papers (the brief's examples among them).
SPOT = [
    ("osprey", "3", "Osprey-7B", "lvis_cls", None, "ss", 65.24),
    ("osprey", "3", "Osprey-7B", "lvis_cls", None, "s_iou", 38.19),
    ("osprey", "3", "Osprey-7B", "paco_cls", None, "s_iou", 52.72),
    ("osprey", "2", "Osprey-7B", "cityscapes_ovseg", None, "pq", 50.64),
    ("osprey", "2", "Osprey-7B", "ade20k_ovseg", None, "miou", 29.63),
    ("osprey", "2", "Kosmos-2", "ade20k_ovseg", None, "miou", 5.40),
    ("osprey", "4", "Osprey-Chat-7B", "osprey_description", None, "relative_score", 83.78),
    ("osprey", "5", "Osprey-Chat-7B", "ferret_refer_reason", None, "relative_score", 67.8),
    ("osprey", "6", "Osprey-Chat-7B", "pope_adversarial", None, "accuracy", 85.33),
    ("osprey", "A1", "Osprey-7B-RefCOCOg", "refcocog_cap", None, "cider", 108.3),
    ("regiongpt", "3", "RegionGPT-7B", "coco_region_cls", None, "acc", 80.61),
    ("regiongpt", "3", "RegionGPT-7B", "coco_region_cls", None, "ap", 70.0),
    ("regiongpt", "7", "RegionGPT (SigLIP SO400M-384)", "coco_region_cls", None, "ap_s", 57.9),
    ("regiongpt", "6", "RegionGPT (SigLIP ViT-B-512 no refinement)", "coco_region_cls", None, "ap_l", 65.4),
    (
        "regiongpt",
        "11",
        "RegionGPT (SigLIP ViT-B-512 all COCO regions multi-turn)",
        "coco_region_cls",
        None,
        "ap",
        73.8,
    ),
    ("regiongpt", "12", "RegionGPT (COCO-only 200 per class)", "coco_region_cls", None, "ap", 60.9),
    (
        "regiongpt",
        "15",
        "RegionGPT (SigLIP SO400M-384 no refinement box)",
        "coco_region_cls",
        None,
        "ap",
        60.0,
    ),
    ("regiongpt", "16", "RegionGPT-7B (box)", "coco_region_cls", None, "ap", 69.3),
    ("regiongpt", "4", "RegionGPT-7B", "vg_cap", None, "cider", 145.6),
    ("regiongpt", "5", "RegionGPT-7B", "refcocog_rec_candidates_test", None, "acc@0.5", 86.96),
    ("regiongpt", "5", "MiniGPT-v2", "refcocog_rec_candidates", None, "acc@0.5", 84.44),
    ("regiongpt", "8", "RegionGPT-7B", "pope_popular", None, "precision", 95.44),
    ("regiongpt", "8", "mPLUG-Owl", "pope_adversarial", None, "yes_ratio", 98.67),
    ("sphinx_v", "3", "SPHINX-V", "lvis_cls", None, "ss", 87.06),
    ("sphinx_v", "4", "SPHINX-V", "cocotext_regional_ocr", None, "accuracy", 45.44),
    ("sphinx_v", "8", "SPHINX-V", "mdvp_point", None, "relative_score/screenshot", 54.05),
    ("sphinx_v", "10", "SPHINX-V", "vg_cap", None, "meteor", 24.3),
    ("mglmm", "3", "MGLMM", "gcg_grandf_val", None, "mask_recall", 45.2),
    ("mglmm", "3", "GLaMM", "gcg_grandf_test", None, "ap50", 29.2),
    ("mglmm", "1", "MGLMM (MGSCData fine-tuned)", "mgsc_subtree", None, "cider", 10.0),
    ("mglmm", "2", "MGLMM-7B (+USCDF +GranD)", "refseg_refcocog_test", None, "ciou", 77.5),
    ("mglmm", "2", "MGLMM-7B (no USCDF, no GranD)", "grefcoco_testA", None, "ciou", 57.7),
]


@pytest.mark.parametrize(("paper", "table", "model", "task", "split", "metric", "value"), SPOT)
def test_spot_values(
    baselines: Baselines,
    paper: str,
    table: str,
    model: str,
    task: str,
    split: str | None,
    metric: str,
    value: float,
) -> None:
    found = [
        e.metrics[metric]
        for e in baselines.entries
        if (e.paper, e.table, e.model, e.task, e.split) == (paper, table, model, task, split)
        and metric in e.metrics
    ]
    assert value in found  # (SPHINX-V has a point and a box row on LVIS)


def test_sphinx_v_box_and_point_rows_differ(baselines: Baselines) -> None:
    lvis = {e.input: e.metrics for e in baselines.entries if e.model == "SPHINX-V" and e.task == "lvis_cls"}
    assert lvis == {"point": {"ss": 83.16, "s_iou": 58.64}, "box": {"ss": 87.06, "s_iou": 62.90}}


def _contains_run(seq: list[float | None], values: list[float]) -> bool:
    """``values`` appear in ``seq`` one after another, in this order (the table's columns)."""
    n = len(values)
    return any(seq[i : i + n] == values for i in range(len(seq) - n + 1))


def _row_holds(lines: list[str], label: str, values: list[float]) -> bool:
    """A table row labelled ``label`` holding ``values`` side by side, in column order."""
    for line in lines:
        fields = line.split("\t")
        if fields[0].strip() == label and _contains_run(_numbers(fields[1:]), values):
            return True
    return False


def _column_holds(lines: list[str], label: str, values: list[float]) -> bool:
    """A transposed table: ``label`` heads column k; ``values`` fill consecutive rows of it."""
    for i, line in enumerate(lines):
        fields = [f.strip() for f in line.split("\t")]
        # Every column the label heads (RegionGPT Table 15 prints "w/ box" twice).
        for k in (j for j, f in enumerate(fields) if f == label):
            below = []
            for row in lines[i + 1 : i + 20]:
                cells = row.split("\t")
                below.append(_numbers(cells)[k] if len(cells) > k else None)
            if _contains_run(below, values):
                return True
    return False


def test_every_entry_is_in_its_paper(baselines: Baselines, seeds: Path) -> None:
    texts = {
        key: "\n".join((seeds / name).read_text("utf-8") for name in paper.seeds).splitlines()
        for key, paper in baselines.papers.items()
    }
    missing = []
    for e in baselines.entries:
        lines = texts[e.paper]
        values = list(e.metrics.values())
        if not (_row_holds(lines, e.as_written, values) or _column_holds(lines, e.as_written, values)):
            missing.append(f"{e.paper} T{e.table} {e.as_written} {e.task} {values}")
    assert missing == []


def test_the_check_catches_a_typo(baselines: Baselines, seeds: Path) -> None:
    lines = (seeds / baselines.papers["osprey"].seeds[0]).read_text("utf-8").splitlines()
    assert _row_holds(lines, "Osprey-7B (Ours)", [65.24, 38.19])
    assert not _row_holds(lines, "Osprey-7B (Ours)", [65.42, 38.19])
    assert not _row_holds(lines, "Osprey-7B (Ours)", [38.19, 65.24])  # columns swapped
    regiongpt = (seeds / baselines.papers["regiongpt"].seeds[0]).read_text("utf-8").splitlines()
    assert _column_holds(regiongpt, "Ours", [87.80, 97.75, 78.13, 86.85, 41.20])
    assert not _column_holds(regiongpt, "Shikra [9]", [87.80])
    assert not _column_holds(regiongpt, "Ours", [97.75, 87.80])  # metrics swapped


def test_transcribed_labels_exist_verbatim(baselines: Baselines, seeds: Path) -> None:
    for key, paper in baselines.papers.items():
        text = "\n".join((seeds / name).read_text("utf-8") for name in paper.seeds)
        for e in baselines.entries:
            if e.paper == key:
                assert re.search(re.escape(e.as_written), text), e.as_written
