import numpy as np
import pytest
from pycocotools import mask as mask_utils

from evalkit.regions import Region, RegionError, box_to_mask, mask_to_box


def test_polygon_to_mask_matches_coco_ann_to_mask():
    polys = [[10, 10, 30, 10, 30, 25, 10, 25], [40, 5, 50, 5, 45, 15]]
    h, w = 40, 60
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w)))
    region = Region.from_polygons(polys, h, w)
    np.testing.assert_array_equal(region.to_mask(), expected)
    assert region.area() == int(expected.sum())


def test_rle_round_trip_and_uncompressed_rle():
    mask = np.zeros((7, 9), np.uint8)
    mask[2:5, 3:8] = 1
    region = Region.from_mask(mask)
    np.testing.assert_array_equal(Region.from_rle(region.rle or {}, 7, 9).to_mask(), mask)
    # Uncompressed RLE (column-major run lengths) as COCO writes crowd masks.
    flat = mask.flatten(order="F")
    counts: list[int] = []
    last: object = 0  # then the mask's numpy values
    run = 0
    for v in flat:
        if v != last:
            counts.append(run)
            run, last = 0, v
        run += 1
    counts.append(run)
    np.testing.assert_array_equal(
        Region.from_segmentation({"size": [7, 9], "counts": counts}, 7, 9).to_mask(), mask
    )


def test_mask_box_conversions_are_consistent():
    mask = np.zeros((20, 30), np.uint8)
    mask[4:9, 10:21] = 1
    assert mask_to_box(mask) == (10.0, 4.0, 21.0, 9.0)
    np.testing.assert_array_equal(box_to_mask((10, 4, 21, 9), 20, 30), mask)
    box = Region.from_mask(mask).convert("box")
    assert box.kind == "box" and box.box == (10.0, 4.0, 21.0, 9.0)
    np.testing.assert_array_equal(box.convert("mask").to_mask(), mask)


def test_box_xywh_and_json_round_trip():
    region = Region.from_box([2, 3, 4, 5], 20, 20, fmt="xywh")
    assert region.box == (2.0, 3.0, 6.0, 8.0)
    assert Region.from_json(region.to_json()) == region
    point = Region.from_points([[5, 6]], 20, 20)
    assert point.to_mask()[6, 5] == 1 and point.to_mask()[0, 0] == 0


@pytest.mark.parametrize(
    ("seg", "message"),
    [
        ([[1, 1, 5, 5]], "needs >= 3"),
        ([], "empty polygon list"),
        ({"size": [10, 11], "counts": "abc"}, "does not match the image size"),
        ({"size": [10, 10], "counts": [3, 4]}, "covers 7 pixels"),
        ("not a segmentation", "list of polygons or an RLE"),
    ],
)
def test_invalid_segmentations_are_rejected(seg, message):
    with pytest.raises(RegionError, match=message):
        Region.from_segmentation(seg, 10, 10)


def test_box_outside_image_is_rejected():
    with pytest.raises(RegionError, match="outside"):
        Region.from_box([50, 50, 60, 60], 20, 20)
    with pytest.raises(RegionError, match="empty"):
        Region.from_box([5, 5, 5, 9], 20, 20)
