"""Issue 20 C1-C3: no key inside a URL or pasted into a flag reaches results.json or the
report; a default key never travels to a host nobody chose it for; image names from the
data never read a file outside the images folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.errors import ConfigError, DataError
from evalkit.judge.settings import JudgeOptions, judge_settings
from evalkit.redact import redact_argv, redact_text, redact_url
from tests.bad_inputs import _good_records
from tests.fake_openai import FakeOpenAI
from tests.helpers import write_images

URL_KEY = "sk-IN-THE-URL-7f3a"
QUERY_KEY = "sk-IN-THE-QUERY-91c0"
OPENAI_KEY = "sk-openai-DEFAULT-0d2e"
PASTED_KEY = "sk-PASTED-as-a-name-4b8c"


def test_redact_url_masks_userinfo_and_secret_query_values() -> None:
    assert redact_url("http://me:sk-1@host:8000/v1") == "http://me:***@host:8000/v1"
    assert redact_url("https://sk-1@host/v1") == "https://***@host/v1"
    assert redact_url("https://host/v1?api-key=sk-2&x=1") == "https://host/v1?api-key=***&x=1"
    assert redact_url("https://host/v1?access_token=a&sig=b") == "https://host/v1?access_token=***&sig=***"
    # Nothing secret: the very same text (store keys built on the URL do not change).
    for plain in ("http://127.0.0.1:8000/v1", "https://api.openai.com/v1?", "https://h/v1?x=1#f"):
        assert redact_url(plain) == plain
    assert redact_url("http://h:notaport/v1") == "***"
    assert redact_text(f"base_url=http://u:{URL_KEY}@h/v1,model=m") == "base_url=http://u:***@h/v1,model=m"


def test_redact_argv_masks_urls_secret_args_and_pasted_keys() -> None:
    argv = [
        "evalkit",
        "--model-args",
        f"base_url=http://u:{URL_KEY}@h/v1,model=m,token=abc,api_key_env={PASTED_KEY}",
        "--judge-base-url",
        f"https://h/v1?key={QUERY_KEY}",
        "--judge-api-key-env",
        PASTED_KEY,
        f"--judge-api-key-env={PASTED_KEY}",
        "--judge-api-key-env",
        "MY_JUDGE_KEY",
    ]
    out = redact_argv(argv)
    text = " ".join(out)
    for secret in (URL_KEY, QUERY_KEY, PASTED_KEY, "abc"):
        assert secret not in text
    assert out[2] == "base_url=http://u:***@h/v1,model=m,token=***,api_key_env=***"
    assert out[-1] == "MY_JUDGE_KEY"  # a variable's name is no secret


def _lvis(tmp_path: Path, records: list[dict] | None = None) -> list[str]:
    records = records or _good_records()
    (tmp_path / "ann.json").write_text(json.dumps(records))
    write_images(tmp_path / "images", [r for r in records if "/" not in r["file_name"]])
    return [
        "--task",
        "lvis_cls",
        "--data",
        f"annotations={tmp_path / 'ann.json'}",
        "--data",
        f"images={tmp_path / 'images'}",
    ]


FAST = "timeout=2,max_attempts=2,backoff_base=0.001,backoff_max=0.005,cache=off"


def test_a_key_inside_the_base_url_is_never_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVALKIT_API_KEY", "EMPTY")
    out = tmp_path / "run"
    with FakeOpenAI(fault_rate=0.0) as srv:
        base = srv.url.replace("http://", f"http://user:{URL_KEY}@") + f"?api-key={QUERY_KEY}"
        args = ["run", "--model", "api", "--model-args", f"base_url={base},model=m,{FAST}"]
        monkeypatch.setattr("sys.argv", ["evalkit", *args])
        assert main([*args, *_lvis(tmp_path), "--output", str(out)]) == 0, capsys.readouterr().err
        assert len(srv.bodies) == 6
    assert main(["report", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["adapter"]["base_url"].startswith("http://user:***@127.0.0.1:")
    assert "api-key=***" in results["provenance"]["adapter"]["base_url"]
    assert any("user:***@" in a for a in results["provenance"]["command"])
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert URL_KEY.encode() not in data and QUERY_KEY.encode() not in data, path


def test_the_judge_records_its_url_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALKIT_JUDGE_BASE_URL", raising=False)
    settings = judge_settings("gpt-4", JudgeOptions(base_url=f"http://u:{URL_KEY}@h/v1"), environ={})
    assert settings.base_url == f"http://u:{URL_KEY}@h/v1"  # the client still gets it
    assert settings.describe()["base_url"] == "http://u:***@h/v1"


def test_openai_key_goes_to_openai_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("EVALKIT_JUDGE_API_KEY", raising=False)
    local = judge_settings("gpt-4", JudgeOptions(base_url="http://127.0.0.1:9/v1"), environ={})
    assert local.api_key_vars == ("EVALKIT_JUDGE_API_KEY",) and local.api_key() == "EMPTY"
    openai = judge_settings("gpt-4", JudgeOptions(), environ={})
    assert openai.api_key_vars == ("EVALKIT_JUDGE_API_KEY", "OPENAI_API_KEY")
    assert openai.api_key() == OPENAI_KEY
    # Named explicitly, OPENAI_API_KEY may go anywhere: the user chose it.
    chosen = judge_settings(
        "gpt-4", JudgeOptions(base_url="http://127.0.0.1:9/v1", api_key_env="OPENAI_API_KEY"), environ={}
    )
    assert chosen.api_key() == OPENAI_KEY


def test_api_model_never_sends_openai_key_to_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("EVALKIT_API_KEY", raising=False)
    with FakeOpenAI(fault_rate=0.0) as srv:
        args = ["run", "--model", "api", "--model-args", f"base_url={srv.url},model=m,{FAST}"]
        assert main([*args, *_lvis(tmp_path), "--output", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    assert srv.authorizations and all(OPENAI_KEY not in (a or "") for a in srv.authorizations)


def test_a_key_pasted_as_the_key_variable_is_refused_without_repeating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        judge_settings("gpt-4", JudgeOptions(base_url="http://h/v1", api_key_env=PASTED_KEY), environ={})
    assert PASTED_KEY not in str(err.value) and "NAME of an environment variable" in str(err.value)
    code = main(
        [
            "run",
            "--model",
            "api",
            "--model-args",
            f"base_url=http://h/v1,model=m,api_key_env={PASTED_KEY}",
            *_lvis(tmp_path),
        ]
    )
    stderr = capsys.readouterr().err
    assert code == 2 and PASTED_KEY not in stderr and "NAME of an environment variable" in stderr


@pytest.mark.parametrize("name", ["../secret.jpg", "/etc/hostname", "a/../../secret.jpg", ""])
def test_image_names_may_not_leave_the_images_folder(name: str) -> None:
    from evalkit.images import image_in

    with pytest.raises(DataError, match="not a path inside the images folder"):
        image_in(Path("/data/images"), name, "rec")


def test_api_model_never_uploads_a_file_outside_the_images_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    monkeypatch.setenv("EVALKIT_API_KEY", "EMPTY")
    records = _good_records()
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "private.jpg")  # beside, not inside
    records[1]["file_name"] = "../private.jpg"
    with FakeOpenAI(fault_rate=0.0) as srv:
        args = ["run", "--model", "api", "--model-args", f"base_url={srv.url},model=m,{FAST}"]
        code = main([*args, *_lvis(tmp_path, records), "--output", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and "'../private.jpg' is not a path inside the images folder" in err
        assert not srv.bodies
        # Skipped, the other records run; the hostile one is listed.
        assert (
            main([*args, *_lvis(tmp_path, records), "--output", str(tmp_path / "o"), "--on-error", "skip"])
            == 0
        )
        assert len(srv.bodies) == 4
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["counts"]["skipped"] == 2 and "../private.jpg" in results["skipped"][0]


def test_report_never_embeds_a_file_a_tampered_run_points_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from evalkit.report.html_report import recorded_samples

    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "private.jpg")
    rows = [
        {
            "id": "a",
            "sample": {"image_path": str(tmp_path / "private.jpg"), "image": "img0.jpg", "regions": []},
        },
        {
            "id": "b",
            "sample": {"image_path": "/x/images/img1.jpg", "image": "../../private.jpg", "regions": []},
        },
        {
            "id": "c",
            "sample": {
                "image_path": "/x/images/COCO_val2014_1.jpg",
                "image": "COCO_val2014_1.jpg",
                "regions": [],
            },
        },
        {
            "id": "d",
            "sample": {"image_path": "/x/images/1.jpg", "image": "COCO_val2014_1.jpg", "regions": []},
        },
    ]
    view = recorded_samples(rows, None)
    assert view is not None
    assert view.samples["a"].image_path is None and view.samples["b"].image_path is None
    assert view.samples["c"].image_path == "/x/images/COCO_val2014_1.jpg"
    assert view.samples["d"].image_path == "/x/images/1.jpg"  # Osprey's short COCO name
    moved = recorded_samples(rows, tmp_path / "images")
    assert moved is not None and moved.samples["b"].image_path is None
    assert any("not a path inside the images folder" in n for n in moved.notes)
