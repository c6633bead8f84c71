"""One request per SPHINX-V record: the file's question about all of an image's regions.

SPHINX-V's encoder takes at most 10 visual prompts (``llama_ens5_vp.py``; the question text is
not changed when there are more, PROTOCOLS_WAVE2.md §A), so a request shows the first
``max_regions`` regions; the rest stay in the ground truth (the released scorers still read
them) and are counted as not shown.

The card's prompt places the file's question at ``{question}``. With ``{regions}`` in the
prompt the regions are listed as numbered placeholders (``Region 1: <region>`` ...,
:func:`evalkit.multi_region.multi_region_request`), so any model can be asked; a prompt
without ``{regions}`` (the ``verbatim`` variants) is the file's question alone, the regions
travelling as visual prompts that no text names — what SPHINX-V itself is given, for adapters
that take such marks natively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evalkit.multi_region import SPHINX_V_MAX_REGIONS, multi_region_request, split_shown
from evalkit.protocol import ProtocolArgs
from evalkit.records import Request, Sample

from .sphinx_v_json import SphinxVQuestion


class MultiRegionArgs(ProtocolArgs):
    max_regions: int | None = SPHINX_V_MAX_REGIONS  # visual prompts shown (SPHINX-V: 10)
    region_name: str = "Region"  # how the numbered list names them (SPHINX-V: Mark for points)


def sphinx_v_requests(
    samples: Sequence[Sample],
    prompt: str,
    generation: dict[str, Any],
    args: MultiRegionArgs,
    generation_for: Callable[[Sample, dict[str, Any]], dict[str, Any]],
) -> list[Request]:
    out = []
    for s in samples:
        text = prompt.replace("{question}", s.info(SphinxVQuestion).question)
        gen = generation_for(s, generation)
        if "{regions}" in text:
            out.append(multi_region_request(s, text, gen, args.max_regions, args.region_name).request)
        else:
            shown, _ = split_shown(s.regions, args.max_regions)
            out.append(Request(s.id, s.id, s.image_path, text, shown, gen))
    return out


def regions_not_shown(samples: Sequence[Sample], limit: int | None) -> int:
    """Regions of the files' records beyond the limit (counted from the file's prompts, so
    also when scoring without images)."""
    if limit is None:
        return 0
    return sum(max(0, len(s.info(SphinxVQuestion).vp) - limit) for s in samples)
