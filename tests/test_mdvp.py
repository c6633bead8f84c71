"""MDVP-Bench: records in the released format, per-phase tokens, Set-of-Marks judge, groups."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task
from tests.fake_openai import FakeOpenAI, images_of, text_of
from tests.judged_helpers import (  # noqa: F401 - judge_env is a fixture
    KEY,
    assert_no_key,
    cache_dir,
    judge_bodies,
    judge_env,
    released_summary,
    rows,
)

PHASES = {
    "natural_QA": "natural",
    "android_QA": "screenshot",
    "natural_detailed_caption": "natural",
}


def make_bench(shared: Path, tmp: Path, kind: str = "box") -> tuple[Path, Path]:
    """A small MDVP-Bench tree (3 task folders) and a config with just their phases."""
    released = json.loads((shared / "fixtures/mdvp/vp_annotation_config.json").read_text())
    config = {k: v for k, v in released.items() if k.rsplit("_", 1)[0] in PHASES}
    root = tmp / "MDVP-Bench"
    for t, task in enumerate(PHASES):
        folder = root / task
        folder.mkdir(parents=True)
        records = []
        for q in range(4):
            name = f"{task}_{q}.png"
            rng = np.random.default_rng(10 * t + q)
            Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / name)
            vp: dict[str, Any] = (
                {"bbox": [[10 + q, 12, 40, 30], [60, 40, 30.5, 20]]}
                if kind == "box"
                else {"points": [[20 + q, 30], [90, 70]]}
            )
            records.append(
                {
                    "image_name": name,
                    "question": f"What is in <Region 1> of {task} {q}?",
                    "question_id": q + 1,
                    "gt_answers": f"A reference answer {q}.",
                    **vp,
                }
            )
        (folder / f"{task}_{kind}.json").write_text(json.dumps(records))
    path = tmp / "vp_annotation_config.json"
    path.write_text(json.dumps(config))
    return root, path


def test_mdvp_reader_phases_and_tokens(shared_dir: Path, tmp_path: Path) -> None:
    root, config = make_bench(shared_dir, tmp_path)
    task = get_task("mdvp_box")
    data = task.resolve_data({"root": str(root), "config": str(config), "images": str(root)})
    samples = task.load_samples(data).samples
    assert len(samples) == 12 and samples[0].id == "android_QA_box/1"  # config order
    s = next(x for x in samples if x.id == "android_QA_box/2")
    assert s.meta.to_json()["domain"] == "screenshot" and s.target == "A reference answer 1."
    assert [r.box for r in s.regions] == [(11.0, 12.0, 51.0, 42.0), (60.0, 40.0, 90.5, 60.0)]
    tokens = {r.id.split("/")[0]: r.generation["max_new_tokens"] for r in task.build_requests(samples)}
    assert tokens == {
        "natural_QA_box": 256,
        "android_QA_box": 256,
        "natural_detailed_caption_box": 1024,
    }
    assert task.build_requests(samples, {"max_new_tokens": 7})[0].generation["max_new_tokens"] == 7
    bad = json.loads((root / "android_QA/android_QA_box.json").read_text())
    del bad[2]["gt_answers"]
    (root / "android_QA/android_QA_box.json").write_text(json.dumps(bad))
    with pytest.raises(
        DataError,
        match=r"android_QA_box.json, record #2 \(question_id|android_QA_box.json, record #2",
    ):
        task.load_samples(data)


@pytest.mark.parametrize("kind", ["box", "point"])
@pytest.mark.usefixtures("judge_env")
def test_mdvp_score_sees_marks_and_groups(shared_dir: Path, tmp_path: Path, kind: str) -> None:
    root, config = make_bench(shared_dir, tmp_path, kind)
    ids = [f"{task}_{kind}/{q}" for task in PHASES for q in range(1, 5)]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "text": f"Model says {i}."}) + "\n" for i in ids))
    data = [
        "--data",
        f"root={root}",
        "--data",
        f"config={config}",
        "--data",
        f"images={root}",
        "--data",
        f"rule={shared_dir / 'fixtures/mdvp/rule.json'}",
    ]
    out = tmp_path / "o"
    with FakeOpenAI(fault_rate=0.3, malformed_rate=0.1, api_key=KEY) as srv:
        score = ["score", "--task", f"mdvp_{kind}", "--predictions", str(preds), *data]
        score += ["--judge-base-url", srv.url]
        assert main([*score, "--output", str(out)]) == 0
        bodies = judge_bodies(srv)
        before = srv.requests
        assert main([*score, "--output", str(tmp_path / "again")]) == 0
        assert srv.requests == before
    assert len(bodies) == 12
    body = next(b for b in bodies if "Model says android_QA" in text_of(b["messages"]))
    assert (
        body["model"] == "gpt-4-vision-preview" and body["temperature"] == 0.7 and body["max_tokens"] == 2048
    )
    content = text_of(body["messages"])
    assert (
        "[Context]\nThe image is a screenshot from a mobile phone or webpage.\n\n"
        "[Question]\nWhat is in <Region 1>" in content
    )
    assert ("Marks indicating" if kind == "point" else "Regions indicating") in content
    (image,) = images_of(body["messages"])
    assert image["detail"] == "high"
    png = base64.b64decode(image["url"].split(",", 1)[1])
    arr = np.asarray(Image.open(io.BytesIO(png)))
    assert arr.shape == (90, 120, 3) and ((arr == (0, 255, 0)).all(axis=2)).sum() > 20  # green marks
    results = json.loads((out / "results.json").read_text())
    samples = rows(out / "samples.jsonl")
    assert sorted(r["id"] for r in samples) == sorted(ids)
    m = results["metrics"]
    assert m["relative_score"] == released_summary([r["review"] for r in samples], 2, False)
    natural = [r["review"] for r in samples if r["id"].startswith("natural")]
    assert m["relative_score/natural"] == released_summary(natural, 2, False)
    phase = [r["review"] for r in samples if r["id"].startswith(f"android_QA_{kind}/")]
    assert m[f"relative_score/android_QA_{kind}"] == released_summary(phase, 2, False)
    # android_QA is the only screenshot phase here.
    assert m["relative_score/screenshot"] == released_summary(phase, 2, False)
    assert_no_key(tmp_path, cache_dir())
