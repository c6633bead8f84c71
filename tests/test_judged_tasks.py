"""Judged tasks end to end against the fake OpenAI-compatible server (judge and model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from evalkit.cli import main
from evalkit.task import get_task
from tests.fake_openai import JUDGE_SYSTEM, FakeOpenAI, images_of, text_of
from tests.judged_helpers import (  # noqa: F401 - judge_env is a fixture
    FAST_API,
    KEY,
    assert_no_key,
    cache_dir,
    ferret_data,
    ferret_images,
    judge_bodies,
    judge_env,
    released_summary,
    rows,
)


def test_readers_on_the_released_files(shared_dir: Path, tmp_path: Path) -> None:
    fx = shared_dir / "fixtures"
    task = get_task("osprey_description")
    data = task.resolve_data(
        {
            "questions": str(fx / "osprey/description_questions.json"),
            "answers": str(fx / "osprey/description_answers.json"),
            "context": str(fx / "osprey/description_prompt.json"),
            "rule": str(fx / "osprey/rule.json"),
        },
        command="score",
    )
    samples = task.load_samples(data).samples
    assert len(samples) == 80 and samples[0].id == "0" and samples[0].regions[0].kind == "mask"
    assert (samples[0].regions[0].height, samples[0].regions[0].width) == (480, 640)
    assert samples[0].target.startswith("There is a wooden chair")
    req = task.build_requests(samples[:1])[0]
    assert req.prompt == (
        "<image>.\nThis provides an overview of the picture.\n"
        "Could you describe the region shown as <region> in the picture in great detail?"
    )

    images = ferret_images(shared_dir, tmp_path / "coco")
    box = get_task("ferret_refer_desc")
    overrides = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in ferret_data(shared_dir)[1::2]}
    box_samples = {
        s.id: s for s in box.load_samples(box.resolve_data({**overrides, "images": str(images)})).samples
    }
    assert len(box_samples) == 40
    two = box_samples["21"]
    assert [r.kind for r in two.regions] == ["box", "box"]
    assert two.image is not None
    w, h = Image.open(images / two.image).size
    assert two.regions[0].box == pytest.approx((0.838 * w, 0.774 * h, 0.994 * w, 0.974 * h))
    assert box.build_requests([two])[0].prompt.count("<region>") == 2
    mask = get_task("ferret_refer_desc_mask")
    conv = str(fx / "osprey/ferret_box_refer_caption.json")
    m = {
        s.id: s
        for s in mask.load_samples(
            mask.resolve_data({**overrides, "images": str(images), "osprey_questions": conv})
        ).samples
    }
    assert [r.kind for r in m["21"].regions] == ["mask"]  # Osprey's conversion keeps one region
    assert (
        m["21"].meta.to_json()["question"] == two.meta.to_json()["question"]
    )  # the judge sees Ferret's text


@pytest.mark.usefixtures("judge_env")
def test_ferret_score_with_faulty_judge(shared_dir: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    ids = [str(q["question_id"]) for q in rows(shared_dir / "fixtures/ferret/refer_caption/question.jsonl")]
    preds.write_text(
        "".join(
            json.dumps({"id": i, "text": f"Answer {i} [0.1, 0.2, 0.3, 0.4] about the object.</s>"}) + "\n"
            for i in ids
        )
    )
    doomed = "[Assistant 2]\nAnswer 5 about"
    out, out_ref = tmp_path / "default", tmp_path / "reference"
    with FakeOpenAI(
        fault_rate=0.3, malformed_rate=0.15, api_key=KEY, always_fail=lambda t: doomed in t
    ) as srv:
        common = [
            "score",
            "--task",
            "ferret_refer_desc",
            "--predictions",
            str(preds),
            *ferret_data(shared_dir),
            "--judge-base-url",
            srv.url,
            "--judge-model",
            "fake-judge",
        ]
        assert main([*common, "--output", str(out)]) == 0
        n_first = srv.requests
        assert main([*common, "--output", str(out_ref), "--protocol", "reference"]) == 0
        contents = [text_of(b["messages"]) for b in judge_bodies(srv)]
        n_second = srv.requests
        assert main([*common, "--output", str(tmp_path / "again")]) == 0
        assert srv.requests - n_second == 6  # only the failed judgement is asked again
        assert sum(srv.faults.values()) > 20 and srv.auth_failures == 0
    assert n_first > 40
    results = json.loads((out / "results.json").read_text())
    samples = rows(out / "samples.jsonl")
    assert sorted(r["id"] for r in samples) == sorted(ids)  # each item once
    status = {r["id"]: r["status"] for r in samples}
    assert status["5"] == "judge_failed" and {r["review"] for r in samples if r["id"] == "5"} == {None}
    assert set(status.values()) == {"scored", "unparsable", "judge_failed"}
    n_bad = sum(s != "scored" for s in status.values())
    assert results["counts"]["judge_failures"] == n_bad == results["n_failed"]
    assert results["counts"]["judge_unparsable"] == sum(s == "unparsable" for s in status.values()) >= 3
    reviews = [r["review"] for r in samples]
    assert results["metrics"]["relative_score"] == released_summary(reviews, 1, minus_one=False)
    ref_results = json.loads((out_ref / "results.json").read_text())
    ref_reviews = [r["review"] for r in rows(out_ref / "samples.jsonl")]
    assert ref_results["metrics"]["relative_score"] == released_summary(ref_reviews, 1, minus_one=True)
    assert ref_results["provenance"]["protocol_variant"] == "reference"
    assert any("-1" in d for d in results["provenance"]["deviations"])
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["metrics"] == results["metrics"] and again["counts"]["judge_cache_hits"] == 39
    # what the judge saw: Ferret's question with its box, the answer without boxes
    judged = next(c for c in contents if "[Assistant 2]\nAnswer 0 about the object." in c)
    assert judged.startswith(f"{JUDGE_SYSTEM}\n[Context]\nObjects:")
    assert "[Question]\nWhat is the interaction between the object [0.621, 0.082, 0.772, 0.132]" in judged
    assert any(c.startswith(f"{JUDGE_SYSTEM}\n[Context]\\Objects:") for c in contents)  # reference
    assert results["judge"]["model"] == "fake-judge" and '"api_key":' not in json.dumps(results)
    assert_no_key(tmp_path, cache_dir())


@pytest.mark.usefixtures("judge_env")
def test_osprey_description_colon_rule_and_rounding(shared_dir: Path, tmp_path: Path) -> None:
    fx = shared_dir / "fixtures/osprey"
    data = [
        "--data",
        f"questions={fx / 'description_questions.json'}",
        "--data",
        f"answers={fx / 'description_answers.json'}",
        "--data",
        f"context={fx / 'description_prompt.json'}",
        "--data",
        f"rule={fx / 'rule.json'}",
    ]
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": str(i), "text": f"Region: a chair {i}: wooden"}) + "\n" for i in range(80))
    )
    with FakeOpenAI(fault_rate=0.0, api_key=KEY) as srv:
        assert (
            main(
                [
                    "score",
                    "--task",
                    "osprey_description",
                    "--predictions",
                    str(preds),
                    *data,
                    "--output",
                    str(tmp_path / "o"),
                    "--judge-base-url",
                    srv.url,
                ]
            )
            == 0
        )
        content = text_of(judge_bodies(srv)[0]["messages"])
        assert judge_bodies(srv)[0]["model"] == "gpt-4" and judge_bodies(srv)[0]["temperature"] == 0.2
    assert "[Assistant 2]\n a chair " in content  # split(':')[1], as Osprey's script
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    reviews = [r["review"] for r in rows(tmp_path / "o" / "samples.jsonl")]
    assert results["metrics"]["relative_score"] == released_summary(reviews, 2, minus_one=False)
    assert results["n"] == 80 and results["counts"]["judge_failures"] == 0


@pytest.mark.usefixtures("judge_env")
def test_run_api_model_end_to_end(shared_dir: Path, tmp_path: Path) -> None:
    images = ferret_images(shared_dir, tmp_path / "coco")
    out = tmp_path / "run"
    with FakeOpenAI(fault_rate=0.3, api_key=KEY) as srv:
        args = [
            "run",
            "--model",
            "api",
            "--model-args",
            f"base_url={srv.url},model=fake-vlm,{FAST_API}",
            "--task",
            "ferret_refer_desc",
            *ferret_data(shared_dir),
            "--data",
            f"images={images}",
            "--judge-base-url",
            srv.url,
            "--output",
            str(out),
        ]
        assert main(args) == 0
        model_bodies = [b for b in srv.bodies if b["messages"][0].get("content") != JUDGE_SYSTEM]
        assert len(model_bodies) == 40 and len(judge_bodies(srv)) == 40
        before = srv.requests
        assert main(args) == 0  # predictions from the store, judgements from the cache
        (out / "store.sqlite").unlink()
        assert main(args) == 0  # predictions from the api cache
        assert srv.requests == before
        assert sum(srv.faults.values()) > 10
    texts = [text_of(b["messages"]) for b in model_bodies]
    assert all("<image>" not in t and "<region>" not in t for t in texts)
    assert "What is the relationship between the object region 1 and object region 2?" in texts
    for body in model_bodies:
        (image,) = images_of(body["messages"])
        assert image["url"].startswith("data:image/png;base64,") and image["detail"] == "high"
        assert body["temperature"] == 0.0 and body["max_tokens"] == 1024
    preds = rows(out / "predictions.jsonl")
    assert len(preds) == 40 and all(len(p["meta"]["set_of_marks_sha256"]) == 64 for p in preds)
    samples = rows(out / "samples.jsonl")
    assert all(" [" not in r["judged_answer"] for r in samples)
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["relative_score"] == released_summary([r["review"] for r in samples], 1, False)
    assert results["provenance"]["adapter"]["model"] == "fake-vlm"
    assert_no_key(tmp_path, cache_dir())


@pytest.mark.usefixtures("judge_env")
def test_api_failures_are_reported_and_retried_next_run(shared_dir: Path, tmp_path: Path) -> None:
    images = ferret_images(shared_dir, tmp_path / "coco", "refer_reason")
    out = tmp_path / "run"
    broken = {"on": True}
    with FakeOpenAI(
        fault_rate=0.0,
        api_key=KEY,
        always_fail=lambda t: broken["on"] and "purpose of the object region 1?" in t,
    ) as srv:
        args = [
            "run",
            "--model",
            "api",
            "--model-args",
            f"base_url={srv.url},model=m,{FAST_API},max_attempts=2",
            "--task",
            "ferret_refer_reason",
            *ferret_data(shared_dir, "refer_reason"),
            "--data",
            f"images={images}",
            "--judge-base-url",
            srv.url,
            "--output",
            str(out),
        ]
        assert main(args) == 2  # the engine names the unanswered requests
        assert not (out / "results.json").exists()
        answered = len(srv.bodies)
        broken["on"] = False
        assert main(args) == 0
        new_model_calls = [
            b for b in srv.bodies[answered:] if b["messages"][0].get("content") != JUDGE_SYSTEM
        ]
        assert 0 < len(new_model_calls) < 40  # only the failed ones were asked again
        assert all("purpose of the object region 1?" in text_of(b["messages"]) for b in new_model_calls)
    assert json.loads((out / "results.json").read_text())["n"] == 40
