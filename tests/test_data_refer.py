"""`evalkit data prepare refcocog`: refs(umd).p -> refs(umd).json through the plain-data unpickler,
and a tampered refer-toolkit pickle refused in one line with nothing run."""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from evalkit.tasks.caption.refcocog_cap import load_refs

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task

REFS = [
    {
        "ref_id": 1,
        "ann_id": 11,
        "image_id": 1,
        "split": "val",
        "category_id": 1,
        "sent_ids": (0, 1),  # a tuple: JSON makes it a list, nothing reads it
        "sentences": [
            {
                "sent_id": 0,
                "sent": "a man in red",
                "raw": "A man in red.",
                "tokens": ["a", "man", "in", "red"],
            },
            {"sent_id": 1, "sent": "the left man", "raw": "The left man", "tokens": ["the", "left", "man"]},
        ],
    },
    {
        "ref_id": 2,
        "ann_id": 12,
        "image_id": 1,
        "split": "train",
        "category_id": 1,
        "sent_ids": (2,),
        "sentences": [{"sent_id": 2, "sent": "a small box", "raw": "a small box", "tokens": ["a"]}],
    },
    {
        "ref_id": 3,
        "ann_id": 13,
        "image_id": 2,
        "split": "val",
        "category_id": 2,
        "sent_ids": (3,),
        "sentences": [{"sent_id": 3, "sent": "a caf\u00e9 sign", "raw": "A caf\u00e9 sign", "tokens": ["a"]}],
    },
]
INSTANCES = {
    "images": [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 40, "width": 50},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 30, "width": 30},
    ],
    "annotations": [
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        {"id": 12, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]},
        {"id": 13, "image_id": 2, "category_id": 2, "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]]},
    ],
}


def refer_folder(root: Path, refs_blob: bytes) -> Path:
    folder = root / "refcocog"
    folder.mkdir(parents=True)
    (folder / "refs(umd).p").write_bytes(refs_blob)
    (folder / "instances.json").write_text(json.dumps(INSTANCES))
    return folder


def samples_of(refs: Path, instances: Path) -> list[tuple[str, Any, str]]:
    task = get_task("refcocog_cap_refer")
    read = task.load_samples(task.resolve_data({"refs": str(refs), "instances": str(instances)}, "score"))
    return [(s.id, s.target, s.regions[0].to_json()["rle"]["counts"]) for s in read.samples]


def test_refs_pickle_becomes_json_the_task_reads_identically(tmp_path: Path) -> None:
    src = refer_folder(tmp_path, pickle.dumps(REFS, protocol=2))
    dest = tmp_path / "out"
    assert main(["data", "prepare", "refcocog", str(src), str(dest), "--no-progress"]) == 0
    converted = json.loads((dest / "refs(umd).json").read_text())
    assert converted[0]["sent_ids"] == [0, 1] and converted[2]["sentences"][0]["sent"] == "a caf\u00e9 sign"
    assert (dest / "instances.json").resolve() == (src / "instances.json").resolve()
    from_pickle = samples_of(src / "refs(umd).p", src / "instances.json")
    assert from_pickle == samples_of(dest / "refs(umd).json", dest / "instances.json")
    assert [s[:2] for s in from_pickle] == [
        ("11", ["a man in red", "the left man"]),
        ("13", "a caf\u00e9 sign"),
    ]


class Payload:
    """What a tampered refs file would hold: an object whose unpickling calls a function."""

    def __init__(self, func: Any, *args: Any):
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def test_a_reduce_payload_is_refused_in_one_line_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(
        [{"split": "val", "ann_id": 11, "sentences": [], "x": Payload(os.system, f"touch {marker}")}]
    )
    src = refer_folder(tmp_path, blob)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    dest = tmp_path / "out"
    for args in (
        ["data", "prepare", "refcocog", str(src), str(dest)],
        [
            "samples",
            "--task",
            "refcocog_cap_refer",
            "--data",
            f"refs={src / 'refs(umd).p'}",
            "--data",
            f"instances={src / 'instances.json'}",
        ],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "evalkit", *args], capture_output=True, text=True, env=env
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {src / 'refs(umd).p'}: refused, not plain data")
        assert f"would import {os.system.__module__}.system and call it" in lines[0]
        assert "nothing was run" in lines[0] and proc.stdout == ""
        assert not marker.exists()
    assert not (dest / "refs(umd).json").exists()


def _pickles(marker: Path) -> list[bytes]:
    """The same attack in every pickle protocol and through the other opcodes that reach code."""
    code = f"open({str(marker)!r}, 'w').write('ran')"
    blobs = [pickle.dumps([Payload(exec, code)], protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    # INST / OBJ (protocol 0/1 class instantiation) by hand: "c" GLOBAL then "R" REDUCE.
    blobs.append(f"cbuiltins\nexec\n(V{code}\ntR.".encode())
    # EXT1: a global reached through copyreg's extension registry, not by name (registered
    # by the caller for the loads too: the unpickler still asks find_class).
    blobs.append(pickle.dumps(Payload(exec, code), protocol=2))

    class Persistent(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "x" if obj == "secret" else None

    buf = io.BytesIO()
    Persistent(buf, protocol=2).dump(["secret"])
    blobs.append(buf.getvalue())
    return blobs


def test_every_route_to_code_in_a_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    copyreg.add_extension("builtins", "exec", 0xF3)
    try:
        blobs = _pickles(marker)
        assert b"\x82\xf3" in blobs[-2]  # EXT1 0xF3, no name in the file
        _load_all(tmp_path, blobs, marker)
    finally:
        copyreg.remove_extension("builtins", "exec", 0xF3)


def _load_all(tmp_path: Path, blobs: list[bytes], marker: Path) -> None:
    for k, blob in enumerate(blobs):
        path = tmp_path / f"refs{k}.p"
        path.write_bytes(blob)
        with pytest.raises(DataError) as err:
            load_refs(path)
        assert str(err.value).startswith(f"{path}: "), k
        assert "refused, not plain data" in str(err.value) or "persistent" in str(err.value), (k, err.value)
        assert not marker.exists(), k


def test_python2_refs_pickles_still_load(tmp_path: Path) -> None:
    # What the toolkit's refs(umd).p is: protocol 2, Python 2 byte strings (SHORT_BINSTRING),
    # some of them not ASCII (read as latin-1, as before).
    blob = b"\x80\x02]q\x00}q\x01(U\x05splitq\x02U\x03valq\x03U\x04sentq\x04U\x04caf\xe9q\x05ua."
    path = tmp_path / "refs(umd).p"
    path.write_bytes(blob)
    assert load_refs(path) == [{"split": "val", "sent": "caf\u00e9"}]


def test_a_json_refs_file_that_is_not_a_list_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "refs.json"
    path.write_text('{"refs": []}')
    with pytest.raises(DataError, match="not plain data|not a refer-toolkit refs pickle"):
        load_refs(path)
    path.write_text("[1, 2")
    with pytest.raises(DataError, match="malformed JSON"):
        load_refs(path)
