"""Answers with masks (GLaMM's ``<p>phrase</p> [SEG]``): carried by the store,
predictions.jsonl, replay and ``evalkit score --predictions``; a bad RLE, a mask of the wrong
size or one for a phrase the text lacks is one clear line naming the file and the record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from evalkit.engine.predictions_io import read_predictions
from evalkit.engine.store import PredictionStore
from evalkit.errors import PredictionsError
from evalkit.models.replay import ReplayAdapter
from evalkit.outputs import check_masks, parse_prediction, rle_problem, rle_runs, seg_phrases
from evalkit.records import MaskOutput, Prediction, Request
from evalkit.regions import Region

H, W = 12, 16
TEXT = "<p>A dog</p> [SEG] lies on <p>the grass</p> [SEG]."


def _rle(h: int = H, w: int = W, box: tuple[int, int, int, int] = (2, 2, 6, 8)) -> dict[str, object]:
    m = np.zeros((h, w), dtype=np.uint8, order="F")
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(m)
    return {"size": [h, w], "counts": rle["counts"].decode()}


def _request(rid: str = "q1") -> Request:
    region = Region.from_box((0.0, 0.0, 4.0, 4.0), H, W)
    return Request(rid, rid, None, "<image>\nDescribe <region>.", [region], {"masks": True})


def test_seg_phrases_are_the_grounded_spans_in_order() -> None:
    phrases = seg_phrases(TEXT)
    assert [p for p, _, _ in phrases] == ["A dog", "the grass"]
    assert all(TEXT[a:b] == p for p, a, b in phrases)
    assert phrases[0][1:] == (3, 8)


def test_masks_round_trip_through_the_file_form_and_the_store(tmp_path: Path) -> None:
    line = {
        "id": "q1",
        "text": TEXT,
        "masks": [
            {"rle": _rle(), "phrase": "A dog", "span": [3, 8]},
            {"rle": _rle(box=(6, 0, 12, 16)), "score": 0.5},
        ],
    }
    pred = parse_prediction(tmp_path / "p.jsonl", line, "line 1")
    assert pred.masks is not None and pred.masks[0] == MaskOutput(_rle(), "A dog", (3, 8))
    check_masks(pred, H, W, tmp_path / "p.jsonl", "line 1")
    assert pred.to_json()["masks"] == line["masks"]
    with PredictionStore(tmp_path / "store.sqlite") as store:
        store.put("k", pred)
        assert store.get_many(["k"])["k"] == pred
    assert Request("a", "a", None, "x", [], {"masks": True}).needs() == {"generate", "masks"}


def _bad(tmp_path: Path, masks: list[dict[str, object]], text: str = TEXT) -> str:
    path = tmp_path / "preds.jsonl"
    path.write_text(
        json.dumps({"id": "zero", "text": "x"})
        + "\n"
        + json.dumps({"id": "q1", "text": text, "masks": masks})
        + "\n"
    )
    with pytest.raises(PredictionsError) as err:
        read_predictions(path, {"q1": _request(), "zero": _request("zero")})
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "line 2" in message
    return message


def test_each_bad_mask_is_one_line_naming_the_file_and_the_record(tmp_path: Path) -> None:
    assert "not a valid COCO RLE" in _bad(tmp_path, [{"rle": {"size": [H, W], "counts": "!!not-rle"}}])
    assert 'RLE "size" must be [height, width]' in _bad(tmp_path, [{"rle": {"size": [H], "counts": "0"}}])
    assert "mask is 8x8, the image is 12x16" in _bad(tmp_path, [{"rle": _rle(8, 8, (0, 0, 2, 2))}])
    assert "span [40, 90] is not in the" in _bad(tmp_path, [{"rle": _rle(), "span": [40, 90]}])
    assert "reads 'A dog', not the phrase 'a cat'" in _bad(
        tmp_path, [{"rle": _rle(), "phrase": "a cat", "span": [3, 8]}]
    )
    assert "phrase 'a cat' is not in the text" in _bad(tmp_path, [{"rle": _rle(), "phrase": "a cat"}])
    three: list[dict[str, object]] = [{"rle": _rle()}, {"rle": _rle()}, {"rle": _rle()}]
    assert "mask 2: grounds no phrase (the text has 2 <p>...</p> [SEG] span(s))" in _bad(tmp_path, three)


def test_replay_serves_masks_and_checks_them_against_the_request(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    good = {"id": "q1", "text": TEXT, "masks": [{"rle": _rle()}, {"rle": _rle()}]}
    path.write_text(json.dumps(good) + "\n")
    (answer,) = list(ReplayAdapter(str(path)).generate([_request()]))
    assert isinstance(answer, Prediction) and answer.masks is not None and len(answer.masks) == 2
    path.write_text(json.dumps({**good, "masks": [{"rle": _rle(6, 6, (0, 0, 2, 2))}]}) + "\n")
    with pytest.raises(PredictionsError, match=r"line 1.*mask is 6x6, the image is 12x16"):
        list(ReplayAdapter(str(path)).generate([_request()]))


def test_rle_runs_decode_what_pycocotools_encodes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 25, 2))
        m = np.asfortranarray((rng.random((h, w)) < rng.random()).astype(np.uint8))
        counts = mask_utils.encode(m)["counts"].decode()
        runs = rle_runs(counts)
        flat = np.concatenate([np.full(n, k % 2, dtype=np.uint8) for k, n in enumerate(runs)])
        assert np.array_equal(flat.reshape(w, h).T, m)  # column-major, background first
        assert rle_problem(counts, h * w) is None
    assert (
        rle_problem(mask_utils.encode(np.ones((4, 4), np.uint8, order="F"))["counts"].decode(), 15)
        is not None
    )
