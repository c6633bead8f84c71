"""The metric registry: every metric a card lists is declared once, by its module, and the
leaderboard, compare and the report read the same spec."""

from __future__ import annotations

import pytest

from evalkit.metrics.spec import METRIC_SPECS, MetricSpec, metric_header, metric_spec
from evalkit.report.boards import builtin_boards
from evalkit.report.compare import _status, default_tolerance
from evalkit.task import load_card, task_names


def test_every_card_metric_is_declared() -> None:
    declared = set(METRIC_SPECS.names())
    for name in task_names():
        card = load_card(name)[0]
        assert set(card.metrics) <= declared, (name, set(card.metrics) - declared)


def test_specs_carry_header_direction_tolerance_and_scale() -> None:
    assert (metric_spec("s_iou").header, metric_spec("s_iou").tolerance) == ("S-IoU", 0.5)
    assert metric_spec("yes_ratio").higher_is_better is None and not metric_spec("yes_ratio").directed
    assert metric_spec("cider").tolerance == 2.0 and metric_spec("meteor").tolerance == 0.3
    assert metric_spec("relative_score/ocr") == metric_spec("relative_score")
    assert metric_header("relative_score/ocr") == "Relative score (ocr)"
    undeclared = metric_spec("my_new_metric")
    assert (undeclared.header, undeclared.higher_is_better, undeclared.tolerance) == (
        "my_new_metric",
        True,
        1.0,
    )
    assert default_tolerance("miou") == metric_spec("miou").tolerance == 0.5
    with pytest.raises(ValueError, match="tolerance family"):
        MetricSpec("x", "X", True, "nope")


def test_board_headers_come_from_the_specs() -> None:
    shapes = next(b for b in builtin_boards() if b.name == "shapes")
    assert [c.header for c in shapes.columns][:4] == ["cls SS", "cls S-IoU", "cap METEOR", "cap CIDEr"]
    pope = next(c for c in shapes.columns if c.metric == "yes_ratio")
    assert pope.header == "POPE Yes %" and not pope.bold_best


def test_compare_status_follows_the_direction() -> None:
    up = MetricSpec("acc", "Acc", True, "pope")
    down = MetricSpec("err", "Err", False, "pope")
    flat = MetricSpec("ratio", "R", None, "pope")
    assert _status(up, -1.0, 0.5, None, None) == "regression"
    assert _status(up, -1.0, 0.5, -2.0, 0.1) == "noise"  # the interval reaches zero
    assert _status(up, 1.0, 0.5, None, None) == "improved"
    assert _status(up, -0.5, 0.5, None, None) == "ok"  # exactly the tolerance: allowed
    # lower is better: a rise is the regression, a fall the improvement
    assert _status(down, 1.0, 0.5, 0.2, 1.8) == "regression"
    assert _status(down, 1.0, 0.5, -0.1, 1.8) == "noise"
    assert _status(down, -1.0, 0.5, None, None) == "improved"
    assert _status(flat, -30.0, 0.5, None, None) == "info"
