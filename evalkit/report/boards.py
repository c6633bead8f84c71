"""The paper-style boards: which (task, metric) columns each shows, in the papers' order."""

from __future__ import annotations

from dataclasses import dataclass

# Metrics where neither direction is better (POPE's yes-ratio: 50 is balanced, not "best").
UNDIRECTED_METRICS = frozenset({"yes_ratio"})


@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    header: str
    split: str | None = None  # a baseline entry's split; None = the task's default split
    input: str | None = None  # only entries given this region kind (tables split by input)

    @property
    def bold_best(self) -> bool:
        return self.metric not in UNDIRECTED_METRICS


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    columns: tuple[Column, ...]
    description: str = ""
    # True when the region kind is part of the columns (MDVP box/point, LVIS choice by
    # prompt kind): a model's rows then merge across inputs.
    inputs_in_columns: bool = False

    def tasks(self) -> set[str]:
        return {c.task for c in self.columns}


def _cols(task: str, prefix: str, metrics: list[tuple[str, str]], **kw: str) -> list[Column]:
    return [Column(task, m, f"{prefix} {h}".strip(), **kw) for m, h in metrics]


_POPE = [
    ("accuracy", "Acc"),
    ("precision", "Prec"),
    ("recall", "Rec"),
    ("f1", "F1"),
    ("yes_ratio", "Yes %"),
]
_OVSEG = [("pq", "PQ"), ("ap", "AP"), ("miou", "mIoU")]
_SEMANTIC = [("ss", "SS"), ("s_iou", "S-IoU")]
_CAPTION = [("meteor", "METEOR"), ("cider", "CIDEr")]

BOARDS: tuple[Board, ...] = (
    Board(
        "referring_cls",
        "Referring object classification",
        tuple(_cols("lvis_cls", "LVIS", _SEMANTIC) + _cols("paco_cls", "PACO", _SEMANTIC)),
        "Object-level LVIS and part-level PACO; semantic similarity / semantic IoU "
        "(Osprey Table 3, SPHINX-V Table 3).",
    ),
    Board(
        "ovseg",
        "Open-vocabulary segmentation",
        tuple(_cols("cityscapes_ovseg", "Cityscapes", _OVSEG) + _cols("ade20k_ovseg", "ADE20K", _OVSEG)),
        "Ground-truth regions classified by the model; panoptic PQ, instance AP, semantic "
        "mIoU (Osprey Table 2).",
    ),
    Board(
        "captioning",
        "Region captioning",
        tuple(_cols("refcocog_cap", "RefCOCOg", _CAPTION) + _cols("vg_cap", "VG", _CAPTION)),
        "RefCOCOg val and Visual Genome (Osprey Table A1, RegionGPT Table 4, SPHINX-V Tables 6 and 10).",
    ),
    Board(
        "pope",
        "Object hallucination (POPE)",
        tuple(
            _cols("pope_random", "Random", _POPE)
            + _cols("pope_popular", "Popular", _POPE)
            + _cols("pope_adversarial", "Adversarial", _POPE)
        ),
        "COCO val2014 yes/no questions (Osprey Table 6, RegionGPT Table 8). Yes % is the "
        "share of yes answers (not ranked).",
    ),
    Board(
        "judged",
        "GPT-4-judged description and reasoning",
        (
            Column("osprey_description", "relative_score", "Osprey-Bench detailed desc."),
            Column("ferret_refer_desc", "relative_score", "Ferret referring desc."),
            Column("ferret_refer_reason", "relative_score", "Ferret referring reasoning"),
        ),
        "Relative score = judge's mean score of the model / of the reference answers × 100 "
        "(Osprey Tables 4-5, SPHINX-V Tables 5 and 7).",
    ),
    Board(
        "mdvp",
        "MDVP-Bench",
        tuple(
            Column(f"mdvp_{domain}_{kind}", "relative_score", f"{title} {kind}")
            for domain, title in (
                ("natural", "Natural"),
                ("ocr", "OCR"),
                ("multipanel", "Multi-panel"),
                ("screenshot", "Screenshot"),
            )
            for kind in ("box", "point")
        ),
        "GPT-4V-judged relative score per domain and visual-prompt kind (SPHINX-V Table 8).",
        inputs_in_columns=True,
    ),
    Board(
        "closed_set",
        "Closed-set classification, regional OCR and REC",
        (
            Column("coco_cls", "map", "COCO mAP"),
            Column("coco_cls", "accuracy", "COCO Acc"),
            Column("lvis_choice", "accuracy", "LVIS choice point", input="point"),
            Column("lvis_choice", "accuracy", "LVIS choice box", input="box"),
            Column("lvis_choice", "accuracy", "LVIS choice free-form", input="free-form"),
            Column("cocotext_ocr", "accuracy", "COCO-Text OCR"),
            Column("refcocog_rec", "accuracy", "RefCOCOg REC val"),
            Column("refcocog_rec", "accuracy", "RefCOCOg REC test", split="test"),
        ),
        "RegionGPT Tables 3 and 5, SPHINX-V Table 4.",
        inputs_in_columns=True,
    ),
    Board(
        "shapes",
        "Embedded shapes benchmark",
        tuple(
            _cols("shapes_cls", "cls", _SEMANTIC)
            + _cols("shapes_cap", "cap", _CAPTION)
            + _cols("shapes_pope", "POPE", _POPE)
            + _cols("shapes_ovseg", "ovseg", _OVSEG)
        ),
        "The generated benchmark that ships with evalkit (no download): classification, "
        "captioning, yes/no and open-vocabulary views of the same scenes.",
    ),
)
