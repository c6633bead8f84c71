"""samples.jsonl rows: each protocol's per-sample row plus the engine's ``sample`` block.

Protocols write what they scored (prediction, target, per-sample metrics); only the engine
knows what the model was shown — image path, regions, prompt, the region kinds after
conversion — so it adds that to every row, once, for all protocols
(its schema: :class:`evalkit.results.SampleRecord`). The report then reads the run as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.records import Request, Sample
from evalkit.results import SAMPLE_KEY


def sample_record(
    row: Mapping[str, Any], sample: Sample, request: Request | None, inputs: Sequence[str] | None
) -> dict[str, Any]:
    """The block of one row, in :class:`SampleRecord`'s form (a plain dict: a run writes one
    per sample, 100,000 for LVIS-sized tasks); ``image``, ``target`` and ``meta`` only where
    the row lacks them."""
    fields: dict[str, Any] = {
        "image_path": sample.image_path,
        "prompt": request.prompt if request is not None else None,
        "regions": [r.to_json() for r in sample.regions],
    }
    if inputs is not None:
        fields["input"] = list(inputs)
    if "image" not in row:
        fields["image"] = sample.image
    if "target" not in row:
        fields["target"] = sample.target
    meta = sample.meta.to_json()
    if meta and "meta" not in row:
        fields["meta"] = meta
    return fields


def with_sample_blocks(
    rows: Sequence[dict[str, Any]],
    samples: Sequence[Sample],
    requests: Sequence[Request],
    inputs: Mapping[str, Sequence[str]] | None,
) -> list[dict[str, Any]]:
    """``rows`` with a ``sample`` block added to each row whose ``id`` is a sample's.

    ``inputs`` maps request id -> region kinds the model was given (None: no model ran). A
    sample asked several requests is described by its first, as the report shows one card.
    """
    by_id = {s.id: s for s in samples}
    first: dict[str, Request] = {}
    for request in requests:
        first.setdefault(request.sample_id, request)
    out = []
    for row in rows:
        sample = by_id.get(str(row.get("id")))
        if sample is None or SAMPLE_KEY in row:  # not a sample's row, or the protocol's own key
            out.append(row)
            continue
        asked = first.get(sample.id)
        given = inputs.get(asked.id) if inputs is not None and asked is not None else None
        out.append({**row, SAMPLE_KEY: sample_record(row, sample, asked, given)})
    return out
