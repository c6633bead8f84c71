"""Multi-region questions: one request about several regions of one image (SPHINX-V asks
for the labels of every marked region of an image at once, naming them ``Region 1``,
``Region 2``... — ``<Mark i>`` for points — and shows at most 10, PROTOCOLS_WAVE2.md §A).

A protocol builds such a request with :func:`multi_region_request`: the first ``limit``
regions go in, each in the prompt as a numbered ``<region>`` placeholder (what an adapter
replaces with its own region form: Osprey's ``<mask><pos>``, a box in text...), and the
regions left out are counted, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.records import REGION_PLACEHOLDER, Request, Sample
from evalkit.regions import Region

SPHINX_V_MAX_REGIONS = 10  # the visual prompts SPHINX-V's encoder takes (llama_ens5_vp.py)


@dataclass(frozen=True)
class MultiRegionRequest:
    request: Request
    shown: int  # regions in the request
    not_shown: int  # regions of the sample left out (over the limit)


def numbered_regions(n: int, name: str = "Region", line: str = "{name} {i}: {region}") -> str:
    """``Region 1: <region>\\nRegion 2: <region>...`` for ``n`` regions (1-based)."""
    return "\n".join(line.format(name=name, i=i, region=REGION_PLACEHOLDER) for i in range(1, n + 1))


def split_shown(regions: Sequence[Region], limit: int | None) -> tuple[list[Region], list[Region]]:
    """The regions a request shows (the first ``limit``, in order) and those it leaves out."""
    if limit is None or len(regions) <= limit:
        return list(regions), []
    return list(regions[:limit]), list(regions[limit:])


def multi_region_request(
    sample: Sample,
    prompt: str,
    generation: dict[str, Any],
    limit: int | None = SPHINX_V_MAX_REGIONS,
    name: str = "Region",
) -> MultiRegionRequest:
    """One request about the sample's regions: ``prompt``'s ``{regions}`` becomes the
    numbered list of the regions shown."""
    shown, left = split_shown(sample.regions, limit)
    text = prompt.replace("{regions}", numbered_regions(len(shown), name))
    if text.count(REGION_PLACEHOLDER) != len(shown):
        raise ValueError(
            f"sample {sample.id}: the prompt has {text.count(REGION_PLACEHOLDER)} region placeholder(s) "
            f"for {len(shown)} region(s) shown; put {{regions}} where the numbered list goes"
        )
    request = Request(sample.id, sample.id, sample.image_path, text, shown, dict(generation))
    return MultiRegionRequest(request, len(shown), len(left))
