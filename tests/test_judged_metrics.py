"""LLaVA score parsing and the summarisers' relative-score arithmetic, by hand."""

from __future__ import annotations

from evalkit.tasks.judged.judged_review import strip_boxes

from evalkit.metrics.judged import group_scores, parse_score_pair, relative_score


def test_score_line_parsing_follows_llava() -> None:
    assert parse_score_pair("8 9\nbecause") == (8.0, 9.0)
    assert parse_score_pair("8,9") == (8.0, 9.0)  # comma -> space
    assert parse_score_pair("7.5 10") == (7.5, 10.0)
    assert parse_score_pair("8, 9") is None  # two spaces -> three fields
    assert parse_score_pair("Assistant 1: 8") is None
    assert parse_score_pair("8 nine") is None
    assert parse_score_pair("") is None
    assert parse_score_pair("\n8 9") is None  # only the first line counts


def test_relative_score_rounding() -> None:
    # means (8.0, 6.6667) -> (8.0, 6.667); 6.667 / 8 * 100 = 83.3375
    assert relative_score([(8, 6), (9, 7), (7, 7)], 2) == (8.0, 6.667, 83.34)
    assert relative_score([(8, 6), (9, 7), (7, 7)], 1) == (8.0, 6.667, 83.3)
    assert relative_score([(0, 3)], 2) == (0.0, 3.0, None)


def test_groups_exclude_or_average_failures() -> None:
    judgements = [
        (["a"], (8.0, 6.0)),
        (["a"], None),
        (["b"], (9.0, 9.0)),
        (["b"], (6.0, 3.0)),
    ]
    default = group_scores(judgements, digits=2)
    assert default["a"].relative == 75.0 and default["a"].n == 1 and default["a"].n_failed == 1
    # all: ref (8+9+6)/3 = 7.667, model 18/3 = 6.0 -> 6.0 / 7.667 = 78.257...
    assert default["all"].reference_mean == 7.667 and default["all"].relative == 78.26
    ref = group_scores(judgements, digits=2, failures_as_minus_one=True)
    # a: ((8 - 1) / 2, (6 - 1) / 2) = (3.5, 2.5) -> 71.43; all: (22/4, 17/4) = (5.5, 4.25)
    assert ref["a"].relative == 71.43 and ref["a"].n == 2
    assert ref["all"].relative == 77.27
    only_failed = group_scores([(["c"], None)], digits=2)
    assert only_failed["c"].relative is None and only_failed["c"].n_failed == 1


def test_ferret_box_stripping() -> None:
    text = "The sign [0.621, 0.082, 0.772, 0.132] is near a pole [0.3, 0.1, 0.4, 0.9]."
    assert strip_boxes(text) == "The sign is near a pole."
    assert strip_boxes("[0.1, 0.2] starts here") == "[0.1, 0.2] starts here"  # no space before
    assert strip_boxes("a [x] and again [x]") == "a and again"  # every occurrence
