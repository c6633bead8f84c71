"""Region conversions (evalkit.regions.convert) and coordinate conventions (evalkit.regions.coords).

Every expected value is worked out by hand in the comments (or, for a seeded draw, restated from
the generator call the function is documented to make), so a change of behaviour shows here.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.regions import Region, RegionError, box_to_mask, mask_to_box
from evalkit.regions.convert import (
    Conversion,
    convert_region,
    free_form_box,
    free_form_boxes,
    medial_axis_pixels,
    principal_angle,
    rectangle_mask,
    seeded_point,
    seeded_points,
    seeded_scribble,
    tight_box,
    visual_centre,
)
from evalkit.regions.coords import (
    ferret_box,
    ferret_free_form_box,
    ferret_point,
    ferret_regulate_box,
    ferret_text,
    glamm_box,
    qwen2_vl_box,
    qwen2_vl_box_text,
    sphinx_v_box,
    sphinx_v_padding,
    sphinx_v_point,
    sphinx_v_prompts,
    unit_box,
)


def zigzag() -> np.ndarray:
    """5x7 mask, foreground (row, col): (1,1) (1,2) (1,3) (2,2) (3,2) (3,3) (3,4) (3,5).

    Row-major flat indices r*7+c: 8 9 10 16 23 24 25 26.
    """
    m = np.zeros((5, 7), np.uint8)
    m[1, 1:4] = 1
    m[2, 2] = 1
    m[3, 2:6] = 1
    return m


def l_shape() -> np.ndarray:
    """5x7 L: columns 0-1 on every row, plus rows 3-4 across.

    1 1 0 0 0 0 0
    1 1 0 0 0 0 0
    1 1 0 0 0 0 0
    1 1 1 1 1 1 1
    1 1 1 1 1 1 1
    """
    m = np.zeros((5, 7), np.uint8)
    m[:, 0:2] = 1
    m[3:5, :] = 1
    return m


def bar() -> np.ndarray:
    """5x9 image, a 3x7 rectangle at rows 1-3, columns 1-7."""
    m = np.zeros((5, 9), np.uint8)
    m[1:4, 1:8] = 1
    return m


# ---------------------------------------------------------------------- mask <-> box
def test_tight_box_and_rectangle_mask_by_hand() -> None:
    m = zigzag()
    # columns 1..5 and rows 1..3 → x2 = 5+1, y2 = 3+1 (exclusive edges)
    assert tight_box(m) == (1.0, 1.0, 6.0, 4.0) == mask_to_box(m)
    rect = rectangle_mask((1.0, 1.0, 6.0, 4.0), 5, 7)
    expected = np.zeros((5, 7), np.uint8)
    expected[1:4, 1:6] = 1
    np.testing.assert_array_equal(rect, expected)
    np.testing.assert_array_equal(rect, box_to_mask((1, 1, 6, 4), 5, 7))
    # fractional box: pixel centres 1.5 and 2.5 are inside [1.2, 3.0); 0.5 is not
    np.testing.assert_array_equal(rectangle_mask((1.2, 0, 3.0, 1), 1, 4), [[0, 1, 1, 0]])
    with pytest.raises(RegionError, match="empty"):
        tight_box(np.zeros((3, 3)))


# ---------------------------------------------------------------------- seeded point
def test_seeded_point_is_the_documented_draw() -> None:
    m = zigzag()
    fg = [8, 9, 10, 16, 23, 24, 25, 26]
    assert np.flatnonzero(m).tolist() == fg
    for seed in (0, 1, 2, 42):
        k = int(np.random.default_rng(seed).integers(len(fg)))  # the rule, restated
        row, col = divmod(fg[k], 7)
        assert seeded_point(m, seed) == (float(col), float(row))
    # pinned: default_rng(0).integers(8) = 6 → index 25 = (row 3, col 4); seed 42 → 0 → (1, 1)
    assert seeded_point(m, 0) == (4.0, 3.0)
    assert seeded_point(m, 42) == (1.0, 1.0)
    assert seeded_point(m, 0) == seeded_point(m.astype(bool), 0)  # any nonzero dtype


def test_seeded_points_share_one_stream_in_order() -> None:
    m = zigzag()
    # default_rng(0).integers(8) three times: 6, 5, 4 → indices 25, 24, 23 → cols 4, 3, 2 of row 3
    assert seeded_points([m, m, m], seed=0) == [(4.0, 3.0), (3.0, 3.0), (2.0, 3.0)]
    rng = np.random.default_rng(0)
    assert [seeded_point(m, rng) for _ in range(3)] == seeded_points([m] * 3, seed=0)


def test_seeded_point_rejects_empty_and_non_2d() -> None:
    with pytest.raises(RegionError, match="empty"):
        seeded_point(np.zeros((4, 4)), 0)
    with pytest.raises(RegionError, match="2-D"):
        seeded_point(np.ones((2, 2, 2)), 0)


# ---------------------------------------------------------------------- visual centre
def test_visual_centre_of_squares_is_their_centre() -> None:
    # 5x5 all foreground: the image border is background, the centre (2, 2) is 3 away
    assert visual_centre(np.ones((5, 5))) == (2.0, 2.0)
    m = np.zeros((9, 9), np.uint8)
    m[3:8, 1:6] = 1  # rows 3..7, columns 1..5 → centre row 5, column 3
    assert visual_centre(m) == (3.0, 5.0)


def test_visual_centre_of_an_l_shape_lies_on_it() -> None:
    m = l_shape()
    # Pixel (row 3, col 1): nearest background (2, 2) at sqrt(2); every other pixel has a
    # background pixel (or the image border) at distance 1 → unique maximum.
    assert visual_centre(m) == (1.0, 3.0)
    # The centre of mass (Region.convert) is (45/20, 55/20) = (2.25, 2.75): pixel (row 2,
    # col 2), which is background.
    com = Region.from_mask(m).convert("points").points
    assert com == ((2.25, 2.75),)
    assert m[2, 2] == 0


def test_visual_centre_ties_go_to_the_first_pixel_in_row_major_order() -> None:
    # 3x5 all ones: (row 1, cols 1-3) are all 2 from the border → first is column 1
    assert visual_centre(np.ones((3, 5))) == (1.0, 1.0)
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 1:5] = 1  # every pixel is 1 from the background → the first, (row 1, col 1)
    assert visual_centre(m) == (1.0, 1.0)


# ---------------------------------------------------------------------- scribble
def test_medial_axis_of_a_bar_is_its_centre_line() -> None:
    m = bar()
    # distance to background: rows 1 and 3 → 1; row 2 → 1 at columns 1 and 7, else 2;
    # local maxima: row 2, columns 2..6 → flat indices 2*9 + 2..6 = 20..24
    assert medial_axis_pixels(m).tolist() == [20, 21, 22, 23, 24]
    assert principal_angle(m) == 0.0  # wider than tall, no covariance
    assert principal_angle(m.T) == pytest.approx(np.pi / 2)


def test_seeded_scribble_by_hand() -> None:
    m = bar()
    centre_line = tuple((float(x), 2.0) for x in range(2, 7))
    # five chunks of one pixel: the whole centre line, left to right, whatever the seed
    assert seeded_scribble(m, seed=0, n_points=5) == centre_line
    assert seeded_scribble(m, seed=9, n_points=8) == centre_line
    # two chunks, columns [2, 3, 4] and [5, 6]: one draw each from default_rng(seed)
    for seed in (0, 3):
        rng = np.random.default_rng(seed)
        a, b = int(rng.integers(3)), int(rng.integers(2))
        assert seeded_scribble(m, seed=seed, n_points=2) == ((2.0 + a, 2.0), (5.0 + b, 2.0))
    assert seeded_scribble(m, seed=0, n_points=2) == ((4.0, 2.0), (6.0, 2.0))  # draws 2, 1
    # a vertical bar is ordered top to bottom
    assert seeded_scribble(m.T, seed=0, n_points=5) == tuple((2.0, y) for y in (2.0, 3.0, 4.0, 5.0, 6.0))


def test_seeded_scribble_fallbacks_and_errors() -> None:
    one = np.zeros((3, 3), np.uint8)
    one[1, 1] = 1
    assert seeded_scribble(one, seed=0) == ((1.0, 1.0), (1.0, 1.0))  # documented: twice
    sq = np.zeros((7, 7), np.uint8)
    sq[1:6, 1:6] = 1  # ridge = the centre only → all 25 pixels, ordered by x
    assert medial_axis_pixels(sq).tolist() == [24]
    vertices = seeded_scribble(sq, seed=0, n_points=3)
    assert len(vertices) == 3 and all(sq[int(y), int(x)] for x, y in vertices)
    assert [x for x, _ in vertices] == sorted(x for x, _ in vertices)
    for x, y in seeded_scribble(l_shape(), seed=1, n_points=4):
        assert l_shape()[int(y), int(x)] == 1
    with pytest.raises(RegionError, match="n_points"):
        seeded_scribble(sq, seed=0, n_points=1)
    with pytest.raises(RegionError, match="empty"):
        seeded_scribble(np.zeros((3, 3)), seed=0)


# ---------------------------------------------------------------------- free-form boxes
def _released_noise_augmentation(bbox, delta_x_pos=5, delta_y_pos=5, delta_size=0.1):
    """Draw-and-Understand transforms.py:63, restated as released (global numpy RNG)."""
    x, y, w, h = bbox
    noise_x = np.random.randint(-delta_x_pos, delta_x_pos + 1)
    noise_y = np.random.randint(-delta_y_pos, delta_y_pos + 1)
    noise_w = w * (1 + np.random.uniform(-delta_size, delta_size))
    noise_h = h * (1 + np.random.uniform(-delta_size, delta_size))
    x += noise_x
    y += noise_y
    w = max(0, noise_w)
    h = max(0, noise_h)
    return [x, y, w, h]


def _released_stream(boxes, seed):
    """dataset.py:296's call, over the boxes in order, after np.random.seed(seed)."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        return [
            _released_noise_augmentation(
                b, delta_x_pos=int(b[2] / 8), delta_y_pos=int(b[3] / 8), delta_size=0.15
            )
            for b in boxes
        ]
    finally:
        np.random.set_state(saved)


def test_free_form_box_equals_the_released_code() -> None:
    boxes: list[list[float]] = [
        [292.48, 352.59, 95.01, 24.52],
        [401.27, 128.58, 24.94, 36.22],
        [100, 50, 200, 100],
        [3, 4, 5, 6],
    ]
    rng = np.random.RandomState(0)
    ours = [list(free_form_box(b, rng)) for b in boxes]
    assert ours == _released_stream(boxes, 0)  # bit for bit
    # by hand for [100, 50, 200, 100] first on RandomState(0): randint(-25, 26) = 19,
    # randint(-12, 13) = 3, then two uniforms in [-0.15, 0.15)
    first = np.random.RandomState(0)
    assert (first.randint(-25, 26), first.randint(-12, 13)) == (19, 3)
    u_w, u_h = first.uniform(-0.15, 0.15), first.uniform(-0.15, 0.15)
    x, y, w, h = free_form_box((100, 50, 200, 100), np.random.RandomState(0))
    assert (x, y) == (119.0, 53.0)  # the top-left corner moves
    assert w == 200 * (1 + u_w) and h == 100 * (1 + u_h)
    assert 170 <= w <= 230 and 85 <= h <= 115
    # w < 8 → int(w/8) = 0 → no shift
    assert free_form_box((10, 20, 4, 4), np.random.RandomState(5))[:2] == (10.0, 20.0)


def test_free_form_boxes_one_stream_in_sorted_id_order() -> None:
    boxes = {"b/2": [10, 10, 80, 40], "a/1": [0, 0, 64, 64], "c/3": [5, 5, 17, 9]}
    saved = np.random.get_state()
    np.random.seed(123)
    out = free_form_boxes(boxes, seed=0)
    # the global generator was not drawn from: its next value is still RandomState(123)'s first
    assert np.random.randint(10**9) == np.random.RandomState(123).randint(10**9)
    np.random.set_state(saved)
    assert list(out) == ["a/1", "b/2", "c/3"]
    expected = _released_stream([boxes["a/1"], boxes["b/2"], boxes["c/3"]], 0)
    assert [list(v) for v in out.values()] == expected
    shuffled = dict(reversed(list(boxes.items())))
    assert free_form_boxes(shuffled, seed=0) == out  # the mapping's order does not matter
    assert free_form_boxes(boxes, seed=1) != out


# ---------------------------------------------------------------------- Conversion + entry point
def test_conversion_notes() -> None:
    assert (
        Conversion("mask", "points", "seeded", 0).note()
        == "mask -> points (seeded uniform foreground pixel, seed 0)"
    )
    assert Conversion("box", "box", "as given").note() == "box as given"
    assert Conversion("mask", "box", "tight_box").note() == "mask -> box (tight box of the region's pixels)"
    c = Conversion("box", "box", "free_form", 3)
    assert Conversion.from_json(c.to_json()) == c
    assert c.to_json() == {"given": "box", "sent": "box", "method": "free_form", "seed": 3}


def test_convert_region_as_given_is_never_resampled() -> None:
    points = Region.from_points([[3, 4]], 10, 10)
    out, done = convert_region(points, "points", method="seeded", seed=7)
    assert out is points and done == Conversion("points", "points", "as given", None)
    box = Region.from_box([1, 2, 5, 6], 10, 10)
    assert convert_region(box, "box") == (box, Conversion("box", "box", "as given", None))


def test_convert_region_each_path() -> None:
    m = zigzag()
    mask = Region.from_mask(m)
    out, done = convert_region(mask, "box")
    assert out.box == (1.0, 1.0, 6.0, 4.0) and done == Conversion("mask", "box", "tight_box", None)
    out, done = convert_region(mask, "points", seed=0)
    assert out.points == ((4.0, 3.0),) and done == Conversion("mask", "points", "seeded", 0)
    out, done = convert_region(mask, "points")  # no seed → 0, recorded
    assert out.points == ((4.0, 3.0),) and done.seed == 0
    out, done = convert_region(Region.from_mask(l_shape()), "points", method="visual_centre")
    assert out.points == ((1.0, 3.0),) and done == Conversion("mask", "points", "visual_centre", None)
    out, done = convert_region(Region.from_mask(bar()), "scribble", seed=0)
    assert out.kind == "scribble" and out.points == seeded_scribble(bar(), 0)
    assert done == Conversion("mask", "scribble", "medial_axis", 0)
    # box → points: a point of the box's rectangle mask
    box = Region.from_box([1, 1, 6, 4], 5, 7)
    out, done = convert_region(box, "points", seed=0)
    assert out.points == (seeded_point(rectangle_mask((1, 1, 6, 4), 5, 7), 0),)
    out, done = convert_region(box, "mask")
    np.testing.assert_array_equal(out.to_mask(), rectangle_mask((1, 1, 6, 4), 5, 7))
    assert done.method == "rectangle"
    # box → free-form box: noise_augmentation of its xywh
    big = Region.from_box([100, 50, 300, 150], 480, 640)
    out, done = convert_region(big, "box", method="free_form", seed=0)
    x, y, w, h = free_form_box((100, 50, 200, 100), np.random.RandomState(0))
    assert out.box == (x, y, x + w, y + h) and done == Conversion("box", "box", "free_form", 0)
    stream = np.random.RandomState(0)
    out2, done2 = convert_region(big, "box", method="free_form", rng=stream)
    assert out2 == out and done2.seed is None  # a caller's stream: seed unknown


def test_convert_region_rejects_unknown_methods() -> None:
    mask = Region.from_mask(zigzag())
    with pytest.raises(RegionError, match="methods"):
        convert_region(mask, "points", method="centre_of_mass")
    with pytest.raises(RegionError, match="methods"):
        convert_region(Region.from_box([0, 0, 2, 2], 4, 4), "mask", method="drawn")
    with pytest.raises(RegionError, match="free_form"):
        convert_region(mask, "points", rng=np.random.RandomState(0))


def test_region_convert_is_unchanged() -> None:
    # Region.convert is what the engine uses today; the new module must not alter it.
    region = Region.from_mask(l_shape())
    assert region.convert("box").box == (0.0, 0.0, 7.0, 5.0)
    assert region.convert("points").points == ((2.25, 2.75),)  # centre of mass, not resampled
    box = Region.from_box([1, 1, 6, 4], 5, 7)
    np.testing.assert_array_equal(box.convert("mask").to_mask(), rectangle_mask((1, 1, 6, 4), 5, 7))
    assert region.to_json()["kind"] == "mask" and set(region.to_json()) == {"kind", "height", "width", "rle"}


def test_seeded_outputs_are_the_same_on_every_run() -> None:
    m = l_shape()
    for _ in range(2):
        assert seeded_point(m, 11) == seeded_point(m, 11)
        assert seeded_scribble(m, 11) == seeded_scribble(m, 11)
        assert free_form_boxes({"x": [1, 2, 30, 40]}, 4) == free_form_boxes({"x": [1, 2, 30, 40]}, 4)
        assert convert_region(Region.from_mask(m), "points", seed=5) == convert_region(
            Region.from_mask(m), "points", seed=5
        )


# ---------------------------------------------------------------------- SPHINX-V
def test_sphinx_v_vector_p7() -> None:
    # W=640, H=480 → S=640, pad_y0 = int(160/2) = 80
    assert sphinx_v_padding(640, 480) == (0, 80, 640)
    # x: 100/640 = 0.15625 → 0.156; y: 130/640 = 0.203125 → 0.203;
    # x2: 300/640 = 0.46875 → 0.469; y2: 230/640 = 0.359375 → 0.359
    assert sphinx_v_box([100, 50, 200, 100], 640, 480) == [0.156, 0.203, 0.469, 0.359]
    assert sphinx_v_point([320, 240], 640, 480) == [0.5, 0.5, -1, -1]


def test_sphinx_v_portrait_and_square() -> None:
    # H > W: pad_x0 = int((640-480)/2) = 80, S = 640; point (0, 0) → (80/640, 0) = (0.125, 0)
    assert sphinx_v_padding(480, 640) == (80, 0, 640)
    assert sphinx_v_point([0, 0], 480, 640) == [0.125, 0.0, -1, -1]
    # odd difference: int((101-100)/2) = 0
    assert sphinx_v_padding(100, 101) == (0, 0, 101)
    assert sphinx_v_box([0, 0, 50, 50], 100, 100) == [0.0, 0.0, 0.5, 0.5]


def test_sphinx_v_prompts_pad_and_truncate() -> None:
    rows = sphinx_v_prompts([[320, 240]], 640, 480)
    assert rows == [[0.5, 0.5, -1, -1]] + [[0, 0, -1, -1]] * 9
    boxes = sphinx_v_prompts([[100, 50, 200, 100]] * 2, 640, 480)
    assert boxes[:2] == [[0.156, 0.203, 0.469, 0.359]] * 2 and boxes[2:] == [[0, 0, 0, 0]] * 8
    many = sphinx_v_prompts([[i * 10, 0] for i in range(12)], 640, 480)
    assert len(many) == 10 and many[-1] == [round(90 / 640, 3), 0.125, -1, -1]  # first 10 kept
    with pytest.raises(RegionError, match="not both"):
        sphinx_v_prompts([[1, 2], [1, 2, 3, 4]], 640, 480)
    with pytest.raises(RegionError, match="at least one"):
        sphinx_v_prompts([], 640, 480)


# ---------------------------------------------------------------------- Ferret / Shikra
def test_ferret_point_and_box_by_hand() -> None:
    # 320 * (1000/640) = 500, 240 * (1000/480) = 500
    assert ferret_point([320, 240], 640, 480) == (500, 500)
    # box xyxy [100, 50, 300, 150]: 100/640*1000 = 156.25, 50/480*1000 = 104.17,
    # 300/640*1000 = 468.75, 150/480*1000 = 312.5 → floors
    assert ferret_box([100, 50, 300, 150], 640, 480) == (156, 104, 468, 312)
    assert ferret_text(ferret_box([100, 50, 300, 150], 640, 480)) == "[156, 104, 468, 312]"
    assert ferret_text(ferret_point([320, 240], 640, 480)) == "[500, 500]"


def test_ferret_operation_order_quirk() -> None:
    # model_lvis.py: point = int(x * (1000*1.0/W)); 61 * (1000/122) = 499.99999999999994 → 499,
    # while 61 * 1000 / 122 = 500 and the bbox_norm path int(61/122 * 1000) = 500
    assert ferret_point([61, 0], 122, 10) == (499, 0)
    assert ferret_box([61, 0, 62, 1], 122, 10)[0] == 500
    assert ferret_free_form_box([61, 0, 62, 1], 122, 10)[0] == 499


def test_ferret_edges() -> None:
    # x2 == W: 640/640*1000 = 1000, outside [0, 1000): clamped to 999 unless clamp=False
    assert ferret_box([0, 0, 640, 480], 640, 480) == (0, 0, 999, 999)
    assert ferret_box([0, 0, 640, 480], 640, 480, clamp=False) == (0, 0, 1000, 1000)
    assert ferret_free_form_box([-4, 0, 640, 480], 640, 480) == (0, 0, 999, 999)
    assert ferret_free_form_box([-4, 0, 640, 480], 640, 480, clamp=False) == (-6, 0, 1000, 1000)
    # training's regulate_box: clamp pixels to W-1 first → 639/640*1000 = 998.4 → 998
    assert ferret_regulate_box([-4, 0, 640, 480], 640, 480) == (0.0, 0.0, 639.0, 479.0)
    assert ferret_box(ferret_regulate_box([0, 0, 640, 480], 640, 480), 640, 480) == (0, 0, 998, 997)
    with pytest.raises(RegionError):
        ferret_text((1, 2, 3))


# ---------------------------------------------------------------------- GLaMM / GPT4RoI / Qwen2-VL
def test_glamm_and_unit_boxes() -> None:
    # 160/640 = 0.25, 120/480 = 0.25, 480/640 = 0.75, 240/480 = 0.5
    assert glamm_box([160, 120, 480, 240], 640, 480) == (0.25, 0.25, 0.75, 0.5)
    assert unit_box([160, 120, 480, 240], 640, 480) == (0.25, 0.25, 0.75, 0.5)
    # GLaMM's arithmetic is x * (336/W) / 336, which can differ from x/H in the last bit:
    # 360 * (336/480) / 336 = 0.7499999999999999
    assert glamm_box([0, 0, 0, 360], 640, 480)[3] == 360 * (336 / 480) / 336 == 0.7499999999999999
    assert unit_box([0, 0, 0, 360], 640, 480)[3] == 0.75


def test_qwen2_vl_box_and_text() -> None:
    # 100/640*1000 = 156.25, 50/480*1000 = 104.17, 300/640*1000 = 468.75, 150/480*1000 = 312.5
    assert qwen2_vl_box([100, 50, 300, 150], 640, 480) == (156, 104, 468, 312)
    assert qwen2_vl_box_text([100, 50, 300, 150], 640, 480) == "<|box_start|>(156,104),(468,312)<|box_end|>"
    assert qwen2_vl_box_text([100, 50, 300, 150], 640, 480, ref="the dog") == (
        "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(156,104),(468,312)<|box_end|>"
    )
    assert qwen2_vl_box([0, 0, 640, 480], 640, 480) == (0, 0, 999, 999)  # [0, 1000): clamped


def test_docstring_examples_hold() -> None:
    import doctest

    from evalkit.regions import convert, coords

    for module in (convert, coords):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__
