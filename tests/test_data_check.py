"""`evalkit data check TASK`: found / sha256 / known revision / record counts / sampled images /
download page, exit 0 only if the task can run; the families' data.yaml files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from evalkit.cards import CardCatalog, DataKey
from evalkit.cli import main
from evalkit.data.check import check_task, count_records, sample_image_paths
from evalkit.data.facts import FamilyFacts, card_data, family_facts
from evalkit.errors import ConfigError
from evalkit.records import Sample

F = "fixtures"


def check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["data", "check", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_shapes_cls_can_run_on_a_fresh_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "shapes_cls"]) == 0
    out = capsys.readouterr().out
    assert "shapes_cls can run." in out and "8 of 8 sampled image files open" in out
    rc, report = check_json(capsys, "shapes_cls")
    assert rc == 0 and report["can_run"] and report["tasks"][0]["samples"] == 948


def test_lvis_cls_without_data_names_each_missing_key_its_default_path_and_download_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "data"))
    assert main(["data", "check", "lvis_cls"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    annotations = next(line for line in lines if line.startswith("missing annotations:"))
    assert f"{tmp_path}/data/lvis/lvis_val_1k_category.json (default)" in annotations
    assert "https://huggingface.co/datasets/sunshine-lwt/Osprey-ValData" in annotations
    images = next(line for line in lines if line.startswith("missing images:"))
    assert (
        f"{tmp_path}/data/coco/val2017 (default)" in images and "https://cocodataset.org/#download" in images
    )
    assert "lvis_cls cannot run" in out
    assert "MISSING" in out and "download" in out  # the table
    rc, report = check_json(capsys, "lvis_cls")
    (task,) = report["tasks"]
    assert rc == 1 and not report["can_run"] and not task["can_run"]
    assert {k["key"]: (k["found"], k["source"]) for k in task["keys"]} == {
        "annotations": (False, "default"),
        "images": (False, "default"),
    }
    assert all(k["url"] for k in task["keys"]) and task["samples"] is None


@pytest.fixture()
def coco_val2014(tmp_path: Path, shared_dir: Path) -> Path:
    """A tiny JPEG for every image POPE's random split names."""
    folder = tmp_path / "val2014"
    folder.mkdir()
    names = {json.loads(line)["image"] for line in (shared_dir / F / "pope/coco_pope_random.json").open()}
    for name in sorted(names):
        Image.new("RGB", (4, 4), (9, 9, 9)).save(folder / name)
    return folder


def test_pope_random_recognises_the_official_revision_and_opens_images(
    coco_val2014: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = shared_dir / F / "pope/coco_pope_random.json"
    args = ["pope_random", f"--data=questions={questions}", f"--data=images={coco_val2014}"]
    assert main(["data", "check", *args]) == 0
    out = capsys.readouterr().out
    assert "POPE random, current official revision (2023-10-09)" in out and "pope_random can run." in out
    rc, report = check_json(capsys, *args)
    (task,) = report["tasks"]
    keys = {k["key"]: k for k in task["keys"]}
    assert rc == 0 and task["samples"] == 3000 and task["images_opened"] == task["images_checked"] == 8
    assert keys["questions"]["records"] == keys["questions"]["expected_records"] == 3000
    assert keys["questions"]["known_revision"] is True and keys["questions"]["source"] == "--data"
    assert keys["questions"]["sha256"] == "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994"
    # 500 images, not COCO's 40,504: a warning, not a reason not to run.
    assert keys["images"]["records"] == 500 and keys["images"]["kind"] == "folder"
    assert task["warnings"] == ["images: 500 records, expected 40,504"]


def test_a_file_of_another_task_is_named_and_bad_images_stop_the_run(
    coco_val2014: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adversarial = shared_dir / F / "pope/coco_pope_adversarial.json"
    rc, report = check_json(
        capsys, "pope_random", f"--data=questions={adversarial}", f"--data=images={coco_val2014}"
    )
    warnings = report["tasks"][0]["warnings"]
    assert any(
        "none of the known revisions" in w and "known to pope_adversarial: questions" in w for w in warnings
    )
    for image in coco_val2014.iterdir():
        image.write_bytes(b"not a jpeg")
    questions = shared_dir / F / "pope/coco_pope_random.json"
    rc, report = check_json(
        capsys, "pope_random", f"--data=questions={questions}", f"--data=images={coco_val2014}"
    )
    problems = report["tasks"][0]["problems"]
    assert rc == 1 and len(problems) == 8 and all(p.endswith(": not an image") for p in problems)


# Every fixture file is a release the family's data.yaml knows (bytes checked upstream).
FIXTURE_KEYS = [
    ("osprey_description", "questions", "osprey/description_questions.json"),
    ("osprey_description", "answers", "osprey/description_answers.json"),
    ("osprey_description", "context", "osprey/description_prompt.json"),
    ("osprey_description", "rule", "osprey/rule.json"),
    ("ferret_refer_desc", "questions", "ferret/refer_caption/question.jsonl"),
    ("ferret_refer_desc", "answers", "ferret/refer_caption/answer.jsonl"),
    ("ferret_refer_desc", "context", "ferret/refer_caption/context.jsonl"),
    ("ferret_refer_desc", "rule", "ferret/rule.json"),
    ("ferret_refer_reason", "questions", "ferret/refer_reason/question.jsonl"),
    ("ferret_refer_reason", "answers", "ferret/refer_reason/answer.jsonl"),
    ("ferret_refer_reason", "context", "ferret/refer_reason/context.jsonl"),
    ("ferret_refer_desc_mask", "osprey_questions", "osprey/ferret_box_refer_caption.json"),
    ("ferret_refer_reason_mask", "osprey_questions", "osprey/ferret_box_refer_reason.json"),
    ("mdvp_box", "config", "mdvp/vp_annotation_config.json"),
    ("mdvp_point", "rule", "mdvp/rule.json"),
    ("pope_popular", "questions", "pope/coco_pope_popular.json"),
    ("pope_adversarial", "questions", "pope/coco_pope_adversarial.json"),
    ("ade20k_ovseg", "vocabulary", "osprey/ade20k_150_with_prompt_eng.txt"),
    ("cityscapes_ovseg", "vocabulary", "osprey/cityscapes_with_prompt_eng.txt"),
    ("refcocog_cap", "annotations", "sphinx_v/RefCOCOg_brief_caption_gt.json"),
]


@pytest.mark.parametrize(("task", "key", "fixture"), FIXTURE_KEYS)
def test_every_shared_fixture_is_a_known_revision(
    task: str, key: str, fixture: str, shared_dir: Path
) -> None:
    report = check_task(CardCatalog().load(task), {key: str(shared_dir / F / fixture)}, n_images=0)
    found = next(k for k in report.keys if k.key == key)
    assert found.known_revision is True and found.revision, (task, key)
    if found.expected_records is not None:
        assert found.records == found.expected_records, (task, key)


def test_pope_data_yaml_lists_the_readers_revisions() -> None:
    from evalkit.tasks.pope.pope_questions import _REVISIONS

    facts = family_facts("pope")
    listed = {
        (task.removeprefix("pope_"), r.sha256, r.records)
        for task, t in facts.tasks.items()
        for r in t.data["questions"].revisions
    }
    assert listed == {(split, digest, n) for split, _, n, digest in _REVISIONS}


def test_every_family_data_yaml_names_real_tasks_and_keys() -> None:
    catalog = CardCatalog()
    assert "data" not in catalog.names()  # data.yaml is not a card
    families = {catalog.load(n).family for n in catalog.names()}
    named = set()
    for family in sorted(f for f in families if f):
        for task, facts in family_facts(family).tasks.items():
            loaded = catalog.load(task)
            assert loaded.family == family and set(facts.data) <= set(loaded.card.data), (family, task)
            named.add(task)
    # Every Osprey-era task reading downloaded files is described (shapes generates its own);
    # the wave-2 families (closed_set, sphinx_v, vcr, gcg, refseg) have no data.yaml yet.
    real = {
        n for n in catalog.names() if not catalog.load(n).card.is_group and catalog.load(n).family != "shapes"
    }
    osprey_era = set(
        json.loads((Path(__file__).with_name("layout_before_move.json")).read_text())["card_sha256"]
    )
    assert named <= real and len(named) == 17
    assert {n for n in real if n in osprey_era} == named
    for name in catalog.names():
        if not catalog.load(name).card.is_group:
            card_data(catalog.load(name))  # merges without an error


def test_a_misspelt_data_yaml_key_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = FamilyFacts.model_validate({"tasks": {"lvis_cls": {"data": {"anotations": {"url": "x"}}}}})
    monkeypatch.setattr("evalkit.data.facts.family_facts", lambda family: bad)
    with pytest.raises(
        ConfigError,
        match=r"tasks/referring_cls/data.yaml: task lvis_cls has no data key\(s\) \['anotations'\]",
    ):
        card_data(CardCatalog().load("lvis_cls"))


CARD = """name: my_pope
reader: pope_questions
protocol: pope
data:
  questions:
    default: QUESTIONS
    url: https://example.org/my-pope
    count: lines
    revisions: [{sha256: DIGEST, name: my release, records: 3000}]
  images: {default: /nowhere, needed_for: [run]}
prompt: "<image>\\n{text}"
"""


def test_a_card_of_ones_own_sets_the_facts_inline(
    tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = shared_dir / F / "pope/coco_pope_random.json"
    digest = "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994"
    (tmp_path / "my_pope.yaml").write_text(
        CARD.replace("QUESTIONS", str(questions)).replace("DIGEST", digest)
    )
    capsys.readouterr()
    assert main(["--include", str(tmp_path), "data", "check", "my_pope", "--json"]) == 1  # no images
    (task,) = json.loads(capsys.readouterr().out)["tasks"]
    keys = {k["key"]: k for k in task["keys"]}
    assert keys["questions"]["revision"] == "my release" and keys["questions"]["records"] == 3000
    assert keys["images"]["found"] is False and task["problems"] == ["images: not found at /nowhere"]
    (tmp_path / "my_pope.yaml").write_text(CARD.replace("count: lines", "count: rows"))
    assert main(["--include", str(tmp_path), "data", "check", "my_pope"]) == 2
    assert (
        "count must be one of lines, list, keys, images, annotations or files:<glob>"
        in capsys.readouterr().err
    )


def test_groups_check_every_member_and_unknown_keys_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path))
    rc, report = check_json(capsys, "pope")
    assert rc == 1 and [t["task"] for t in report["tasks"]] == [
        "pope_random",
        "pope_popular",
        "pope_adversarial",
    ]
    assert main(["data", "check", "pope", "--data", "annotations=x"]) == 2
    assert "no task of group pope has data key(s) ['annotations']" in capsys.readouterr().err
    assert main(["data", "check", "lvis_cls", "--data", "questions=x"]) == 2
    assert "task lvis_cls has no data key(s) ['questions']" in capsys.readouterr().err


def test_a_reader_failure_is_reported_as_the_readers_own_line(
    tmp_path: Path, coco_val2014: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "q.json"
    bad.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    rc, report = check_json(capsys, "pope_random", f"--data=questions={bad}", f"--data=images={coco_val2014}")
    (problem,) = report["tasks"][0]["problems"]
    assert rc == 1 and problem.startswith("the reader cannot load the data: ") and "record line 1" in problem


# ---------------------------------------------------------------------- units
def test_count_records_by_each_rule(tmp_path: Path) -> None:
    lines = tmp_path / "q.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": 2}\n')
    listed = tmp_path / "l.json"
    listed.write_text("[1, 2, 3]")
    coco = tmp_path / "c.json"
    coco.write_text('{"images": [1, 2], "annotations": [1, 2, 3, 4]}')
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.png", "sub/d.jpg"):
        (folder / name).write_bytes(b"x")
    assert count_records(lines, "lines") == (2, "")
    assert count_records(listed, "list") == (3, "")
    assert count_records(coco, "keys") == (2, "")
    assert count_records(coco, "images") == (2, "") and count_records(coco, "annotations") == (4, "")
    assert count_records(folder, "files:*.jpg") == (2, "") and count_records(folder, "files:**/*.jpg") == (
        3,
        "",
    )
    assert count_records(coco, "list") == (None, "a JSON object, not a list")
    assert count_records(listed, "images") == (None, "no 'images' list")
    assert count_records(folder, "lines") == (None, "a folder, not a file")
    assert count_records(lines, "files:*") == (None, "not a folder")
    assert count_records(lines, "list")[0] is None  # JSON lines are not one JSON value


def test_sampled_images_spread_over_the_distinct_images_in_order() -> None:
    samples = [
        Sample(id=str(k), image=None, regions=[], target="", image_path=f"i{k // 2}.jpg") for k in range(20)
    ]
    assert sample_image_paths(samples, 4) == ["i0.jpg", "i3.jpg", "i6.jpg", "i9.jpg"]
    assert sample_image_paths(samples, 50) == [f"i{k}.jpg" for k in range(10)]
    assert sample_image_paths(samples, 0) == [] and sample_image_paths(samples[:1], 1) == ["i0.jpg"]


def test_data_key_facts_validate() -> None:
    with pytest.raises(ValueError, match="sha256"):
        DataKey.model_validate({"revisions": [{"sha256": "abc", "name": "x"}]})
    assert DataKey.model_validate({"count": "files:*/*.png"}).count == "files:*/*.png"
