import json

import pytest

from evalkit.errors import DataError
from evalkit.readers import READERS
from tests.helpers import LVIS_NAMES, PACO_NAMES, write_coco_style, write_osprey_subset


def read(path, images=None, **options):
    return READERS.get("osprey_json")({"annotations": path, "images": images}, options)


def test_osprey_subset_ids_targets_and_image_paths(tmp_path):
    records = write_osprey_subset(tmp_path / "lvis.json", LVIS_NAMES, 5)
    result = read(tmp_path / "lvis.json", images=tmp_path / "imgs")
    expected_ids = [f"{r['file_name'][:-4]}#{i}" for r in records for i in range(len(r["categories"]))]
    assert [s.id for s in result.samples] == expected_ids
    assert [s.target for s in result.samples] == [c for r in records for c in r["categories"]]
    first = result.samples[0]
    assert first.image == records[0]["file_name"]
    assert first.image_path == str(tmp_path / "imgs" / records[0]["file_name"])
    assert first.regions[0].height == records[0]["height"]
    assert result.files == [tmp_path / "lvis.json"]


def test_coco_style_sampling_is_seeded_and_stable(tmp_path):
    data = write_coco_style(tmp_path / "raw.json", PACO_NAMES + ["bench"], 40)
    a = read(tmp_path / "raw.json", sample_images=10, seed=0)
    b = read(tmp_path / "raw.json", sample_images=10, seed=0)
    c = read(tmp_path / "raw.json", sample_images=10, seed=1)
    assert [s.id for s in a.samples] == [s.id for s in b.samples]
    assert [s.id for s in a.samples] != [s.id for s in c.samples]
    image_ids = {s.id.split("/")[0] for s in a.samples}
    assert len(image_ids) == 10
    by_id = {str(x["id"]): x for x in data["annotations"]}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    for s in a.samples:
        img, ann = s.id.split("/")
        assert cats[by_id[ann]["category_id"]] == s.target
        assert s.image == f"{int(img):012d}.jpg"  # file name from coco_url
    parts = read(tmp_path / "raw.json", sample_images=1000, parts_only=True)
    assert parts.samples and all(":" in s.target for s in parts.samples)


def test_missing_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.json: file not found"):
        read(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"file_name": "a.jpg",')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        read(bad)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r[1]["categories"].append("extra"),
            r"record #1 \(000000100001.jpg\): \d+ categories for \d+ annotations",
        ),
        (
            lambda r: r[2]["annotations"][0].update(segmentation=[[1, 2, 3, 4]]),
            r"record #2 .* annotation 0: invalid segmentation: polygon 0 has 4 coordinates",
        ),
        (
            lambda r: r[0]["annotations"][0].update(segmentation={"size": [1, 1], "counts": "0"}),
            r"record #0 .* annotation 0: invalid segmentation: RLE size \[1, 1\]",
        ),
        (lambda r: r[3].pop("height"), r"record #3 .*missing field 'height'"),
        (lambda r: r[3].update(width="80"), r"record #3 .*field 'width' has the wrong type"),
    ],
)
def test_bad_records_name_file_and_record(tmp_path, mutate, message):
    records = write_osprey_subset(tmp_path / "x.json", LVIS_NAMES, 5, rle_every=100)
    mutate(records)
    (tmp_path / "x.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match="x.json, " + message):
        read(tmp_path / "x.json")
