"""COCO compressed RLE strings checked run by run: pycocotools decodes a string whose runs
fall short of its size into uninitialised memory, and one whose runs overflow it into a
crash, without a word, so every RLE evalkit reads (annotations, predictions) is checked here
first."""

from __future__ import annotations


def rle_runs(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``,
    maskApi.c: 5-bit groups from character - 48, 0x20 continues, 0x10 signs the last group,
    runs after the second stored as the difference to the run two before)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts):
                raise ValueError("the string ends inside a run")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[p]!r} is not of the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def rle_problem(counts: str, pixels: int, zero_runs: bool = False) -> str | None:
    """Why ``counts`` is not an RLE of ``pixels`` pixels (None when it is). pycocotools
    itself decodes garbage without complaint (runs that fall short leave uninitialised
    pixels), so the runs are checked here. ``zero_runs``: allow empty runs after the first
    (other encoders write them; pycocotools never does)."""
    try:
        runs = rle_runs(counts)
    except ValueError as exc:
        return str(exc)
    if any(r < 0 for r in runs):
        return "a run of negative length"
    if not zero_runs and any(r == 0 for r in runs[1:]):
        return "a run of negative or zero length"
    if sum(runs) != pixels:
        return f"its runs cover {sum(runs)} pixels, its size {pixels}"
    return None
