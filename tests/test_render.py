"""Set-of-Marks rendering: deterministic bytes and the MDVP drawing rules, pixel by pixel."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalkit.regions import Region
from evalkit.render import draw_marks, marks_png, png_bytes

W, H = 160, 120
GREY = (100, 150, 200)


def base() -> Image.Image:
    return Image.new("RGB", (W, H), GREY)


def test_boxes_darken_08_green_frame_and_black_label() -> None:
    box = Region.from_box([20.7, 30.2, 50.9, 40.0], H, W, fmt="xywh")  # ints: 20, 30, 50, 40
    arr = np.asarray(draw_marks(base(), [box]))
    assert tuple(arr[110, 150]) == (80, 120, 160)  # rint(v * 0.8), far from the mark
    assert tuple(arr[50, 20]) == (0, 255, 0) and tuple(arr[50, 21]) == (
        0,
        255,
        0,
    )  # left edge, 2 px
    assert tuple(arr[50, 22]) == (80, 120, 160)
    assert tuple(arr[30 + 40, 45]) == (0, 255, 0)  # bottom edge at y + h
    label = arr[35:50, 24:34]  # baseline at (x + 4, y + 20) = (24, 50)
    assert (label == 0).all(axis=2).sum() > 20  # black background
    assert (label == 255).all(axis=2).sum() > 5  # white digit


def test_points_darken_07_filled_disc_and_label() -> None:
    pt = Region.from_points([[80, 60]], H, W)
    arr = np.asarray(draw_marks(base(), [pt]))
    assert tuple(arr[5, 5]) == (70, 105, 140)
    for dy, dx in [(0, 0), (4, 0), (0, -4), (2, 2)]:
        assert tuple(arr[60 + dy, 80 + dx]) == (0, 255, 0)
    assert tuple(arr[60, 86]) != (0, 255, 0)
    label = arr[40:58, 85:97]  # baseline at (x + 5, y - 5)
    assert (label == 255).all(axis=2).sum() > 5


def test_point_label_moves_inside_near_edges() -> None:
    pt = Region.from_points([[155, 3]], H, W)  # right and top edges
    arr = np.asarray(draw_marks(base(), [pt]))
    label = arr[5:25, 135:150]  # x - 20, y + 20
    assert (label == 255).all(axis=2).sum() > 5


def test_masks_scribbles_and_numbering() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[60:100, 20:60] = 1
    regions = [Region.from_mask(mask), Region.from_scribble([[100, 20], [140, 60]], H, W)]
    arr = np.asarray(draw_marks(base(), regions)).astype(int)
    assert tuple(arr[60, 40]) == (0, 255, 0)  # outline
    inside = np.rint(np.array([80, 120, 160]) * 0.65 + np.array([0, 255, 0]) * 0.35)
    assert tuple(arr[95, 55]) == tuple(inside)
    assert tuple(arr[40, 120]) == (0, 255, 0)  # on the scribble


def test_png_is_deterministic_and_checks_sizes(tmp_path: Path) -> None:
    path = tmp_path / "img.jpg"
    base().save(path)
    regions = [Region.from_box([10, 10, 60, 50], H, W), Region.from_points([[100, 80]], H, W)]
    a = marks_png(path, regions)
    b = marks_png(path, regions)
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(a)).size == (W, H)
    assert png_bytes(Image.open(io.BytesIO(a))) == a
    with pytest.raises(ValueError, match="made for a 80x60 image"):
        draw_marks(base(), [Region.from_box([1, 1, 5, 5], 60, 80)])
