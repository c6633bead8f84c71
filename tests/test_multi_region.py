"""Multi-region requests: numbered placeholders, at most 10 regions shown, the rest counted."""

from __future__ import annotations

import pytest

from evalkit.multi_region import multi_region_request, numbered_regions, split_shown
from evalkit.records import Sample
from evalkit.regions import Region


def _sample(n: int) -> Sample:
    regions = [Region.from_box((float(k), 0.0, float(k) + 2.0, 2.0), 10, 40) for k in range(n)]
    return Sample("img7", "img7.jpg", regions, None, image_path="/data/img7.jpg")


def test_numbered_lines() -> None:
    assert numbered_regions(2) == "Region 1: <region>\nRegion 2: <region>"
    assert numbered_regions(1, "Mark") == "Mark 1: <region>"
    assert numbered_regions(0) == ""


@pytest.mark.parametrize(("n", "shown", "left"), [(1, 1, 0), (2, 2, 0), (10, 10, 0), (13, 10, 3)])
def test_at_most_ten_regions_are_shown_and_the_rest_counted(n: int, shown: int, left: int) -> None:
    sample = _sample(n)
    built = multi_region_request(sample, "<image>\n{regions}\nName each region.", {"temperature": 0.0})
    assert (built.shown, built.not_shown) == (shown, left)
    assert built.request.regions == sample.regions[:shown]  # the first ten, in order
    assert built.request.prompt.count("<region>") == shown
    assert built.request.prompt.splitlines()[shown] == f"Region {shown}: <region>"
    assert built.request.id == "img7" and built.request.image_path == "/data/img7.jpg"


def test_a_prompt_without_the_list_is_refused() -> None:
    with pytest.raises(ValueError, match="put \\{regions\\} where the numbered list goes"):
        multi_region_request(_sample(3), "<image>\nWhat is <region>?", {})
    shown, left = split_shown(_sample(4).regions, None)
    assert len(shown) == 4 and left == []
