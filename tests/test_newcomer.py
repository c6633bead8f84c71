"""Issue 20 B: a new user's first wrong command says what to do next, and nothing slow (a
model load) happens before the cheap checks pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tests.fake_adapter  # noqa: F401  (registers slowfake)
from evalkit.cli import main
from evalkit.models import MODELS, Adapter, register_model
from evalkit.records import Prediction, Request
from tests.bad_inputs import _good_records
from tests.helpers import write_images

REPO = Path(__file__).resolve().parents[1]
LOADS: list[str] = []


class Loud(Adapter):
    """Records its construction: a model load that must not happen before the checks."""

    name = "loud"

    def fingerprint(self) -> dict[str, Any]:
        return {"v": 1}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for r in requests:
            yield Prediction(r.id, "dog")


if "loud" not in MODELS.names():

    @register_model("loud")
    def loud(**kwargs: str) -> Adapter:
        LOADS.append(json.dumps(kwargs, sort_keys=True))
        return Loud()


def error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_data_names_every_key_where_to_get_it_and_how_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "nothing"))
    LOADS.clear()
    assert main(["run", "--model", "loud", "--task", "lvis_cls"]) == 2
    line = error_line(capsys.readouterr().err)
    assert "task lvis_cls: 2 data files missing" in line
    assert f"annotations={tmp_path}/nothing/lvis/lvis_val_1k_category.json: file not found" in line
    assert f"images={tmp_path}/nothing/coco/val2017: file not found" in line
    assert "https://huggingface.co/datasets/sunshine-lwt/Osprey-ValData" in line  # where to get it
    assert "https://cocodataset.org/#download" in line
    assert "--data annotations=PATH --data images=PATH" in line and "EVALKIT_DATA" in line
    assert LOADS == []  # checked before the model was built


def test_a_group_lists_the_missing_files_of_every_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path))
    assert main(["run", "--model", "loud", "--task", "pope"]) == 2
    line = error_line(capsys.readouterr().err)
    for split in ("random", "popular", "adversarial"):
        assert f"task pope_{split}: 2 data files missing" in line
    assert main(["run", "--model", "loud", "--task", "pope", "--data", "question=x"]) == 2
    assert "--data question: none of the tasks" in error_line(capsys.readouterr().err)


def test_data_check_lists_each_file_and_exits_1_until_the_task_can_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path))
    assert main(["data", "check", "lvis_cls"]) == 1  # evalkit data check (issue 19's command)
    out = " ".join(capsys.readouterr().out.split())
    assert f"missing annotations: {tmp_path}/lvis/lvis_val_1k_category.json (default)" in out
    assert "https://www.lvisdataset.org/dataset" in out
    (tmp_path / "ann.json").write_text("[]")
    (tmp_path / "images").mkdir()
    args = ["--data", f"annotations={tmp_path / 'ann.json'}", "--data", f"images={tmp_path / 'images'}"]
    main(["data", "check", "lvis_cls", *args])  # an empty file: found, its records counted
    assert "missing annotations" not in capsys.readouterr().out
    assert main(["data", "check", "shapes_cls"]) == 0  # generated on first use


def test_a_judged_task_without_a_judge_fails_before_the_model_loads(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in (
        "EVALKIT_JUDGE_API_KEY",
        "OPENAI_API_KEY",
        "EVALKIT_JUDGE_BASE_URL",
        "EVALKIT_JUDGE_API_KEY_ENV",
    ):
        monkeypatch.delenv(var, raising=False)
    f = shared_dir / "fixtures" / "ferret"
    data = [f"questions={f / 'refer_caption/question.jsonl'}", f"answers={f / 'refer_caption/answer.jsonl'}"]
    data += [f"context={f / 'refer_caption/context.jsonl'}", f"rule={f / 'rule.json'}", f"images={tmp_path}"]
    LOADS.clear()
    args = [
        "run",
        "--model",
        "loud",
        "--task",
        "ferret_refer_desc",
        *(x for d in data for x in ("--data", d)),
    ]
    assert main(args) == 2
    assert "scored by an LLM judge: give --judge-base-url" in error_line(capsys.readouterr().err)
    assert LOADS == []


def test_osprey_reads_its_tokenizer_before_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalkit.errors import ConfigError
    from evalkit.models.osprey import adapter as osprey_adapter

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("weights loaded before the tokenizer was checked")

    monkeypatch.setattr(osprey_adapter, "load_osprey", no_load)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        osprey_adapter.OspreyAdapter("osprey7b", tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="not a directory"):
        osprey_adapter.OspreyAdapter("osprey7b", tmp_path / "nope", device="cpu")


def lvis_args(tmp_path: Path) -> list[str]:
    records = _good_records()
    (tmp_path / "ann.json").write_text(json.dumps(records))
    write_images(tmp_path / "images", records)
    return ["--data", f"annotations={tmp_path / 'ann.json'}", "--data", f"images={tmp_path / 'images'}"]


def test_lm_eval_spellings_and_several_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    LOADS.clear()
    out = tmp_path / "runs"
    base = ["run", "--model", "loud", "--model_args", "x=1", "--batch_size", "4", "--device", "cpu"]
    assert main([*base, "--tasks", "shapes_cls,shapes_pope", "--limit", "2", "--output_path", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"shapes_cls", "shapes_pope"}
    assert json.loads(LOADS[-1]) == {"x": "1", "batch_size": "4", "device": "cpu"}
    # A repeated --task adds tasks (it used to keep only the last one, silently).
    out2 = tmp_path / "runs2"
    assert main(["run", "--model", "loud", "--task", "shapes_cls", "--task", "shapes_pope", "--limit", "2",
                 "--output", str(out2)]) == 0  # fmt: skip
    assert {p.name for p in out2.iterdir()} == {"shapes_cls", "shapes_pope"}
    assert main([*base[:3], "--model-args", "batch_size=8", "--batch_size", "4", "--task", "shapes_cls"]) == 2
    assert "--batch_size 4 and --model-args batch_size=8 disagree" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["run", "--model", "loud", "--task", "shapes_clss"], "unknown task 'shapes_clss'; did you mean shapes_cls"),
        (["run", "--model", "osprey-tni", "--task", "shapes_cls"], "unknown model 'osprey-tni'; did you mean osprey-tiny"),
        (["run", "--model", "loud", "--task", "shapes_cls", "--gen", "temprature=0.5"],
         "--gen temprature=0.5: unknown setting; did you mean temperature? (known: max_new_tokens"),
        (["run", "--model", "loud", "--task", "shapes_cls", "--gen", "max_new_tokens=-3"],
         "--gen max_new_tokens=-3: expected an integer >= 1"),
        (["samples", "--task", "shapes_cls", "--data", "annotation=x"], "did you mean annotations?"),
    ],
)  # fmt: skip
def test_typos_get_a_did_you_mean(args: list[str], expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert expect in error_line(capsys.readouterr().err)


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "evalkit", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["run", "--model", "m", "--taks", "shapes_cls"], "(did you mean --tasks or --task?)"),
        (["run", "--model", "m", "--task", "shapes_cls", "--modelargs", "a=1"], "(did you mean --model_args"),
        (["rnu"], "(did you mean run?)"),
        (["run", "--model", "m", "--task", "shapes_cls", "--limit", "0"], "--limit: expected a whole number >= 1, got 0"),
        (["run", "--model", "m", "--task", "shapes_cls", "--limit", "-1"], "--limit: expected a whole number >= 1, got -1"),
        (["samples", "--task", "shapes_cls", "--limit", "0"], "expected a whole number >= 1"),
    ],
)  # fmt: skip
def test_argparse_errors_suggest_the_option(args: list[str], expect: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2 and expect in proc.stderr, proc.stderr


def test_version_and_tasks_json() -> None:
    import evalkit

    assert cli("--version").stdout.strip() == f"evalkit {evalkit.__version__}"
    rows = json.loads(cli("tasks", "--json").stdout)
    lvis = next(r for r in rows if r["task"] == "lvis_cls")
    assert lvis["metrics"] == ["ss", "s_iou"] and lvis["data"] == ["annotations", "images"]
    assert "\n" not in lvis["description"]


def test_tasks_table_never_cuts_a_description_mid_word() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-m", "evalkit", "tasks"], capture_output=True, text=True, env=env
    ).stdout
    rows = json.loads(cli("tasks", "--json").stdout)
    words = {w for r in rows for w in r["description"].replace("…", " ").split()}
    cells = [line.split("│")[4].strip() for line in out.splitlines() if line.count("│") == 5]
    shown = {w for cell in cells for w in cell.replace("…", " ").split()}
    # a hyphenated word may wrap at its hyphen ("ground-" / "truth"): that is no cut
    parts = {p for w in words for p in w.split("-")} | {p + "-" for w in words for p in w.split("-")[:-1]}
    # an identifier wider than the column (refcocog_rec_candidates at 100 columns) folds
    folded = {w[:k] for w in words if len(w) > 16 for k in range(8, len(w))}
    assert shown and shown <= words | {w.rstrip(",.;:") for w in words} | parts | folded


def test_samples_into_head_ends_without_a_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        f"{sys.executable} -m evalkit samples --task shapes_cls | head -n 2",
        shell=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_limit_must_be_positive_in_the_python_api_too(tmp_path: Path) -> None:
    from evalkit.engine.runner import load
    from evalkit.errors import ConfigError
    from evalkit.task import get_task

    task = get_task("shapes_cls")
    data = task.resolve_data({})
    assert len(load(task, data, 3).samples) == 3
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="limit must be >= 1"):
            load(task, data, bad)
