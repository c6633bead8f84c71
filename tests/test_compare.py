"""`evalkit compare`: the CI gate (tolerances, paired bootstrap, refusals, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evalkit.tasks.shapes.scenes import category_phrase

from evalkit.cards import CardCatalog
from evalkit.cli import main
from evalkit.errors import ConfigError
from evalkit.report.compare import (
    compare_runs,
    default_tolerance,
    mismatches,
    paired_bootstrap,
    parse_tolerances,
)
from evalkit.report.runs import load_run
from tests.helpers import run_replay
from tests.report_helpers import write_run

REPO = Path(__file__).resolve().parents[1]


def _per_sample_run(folder: Path, ss: list[float], **kw: object) -> Path:
    rows = [{"id": f"img{k}#0", "ss": v, "s_iou": 50.0} for k, v in enumerate(ss)]
    metrics = {"ss": float(np.mean(ss)), "s_iou": 50.0}
    return write_run(folder, "shapes_cls", folder.name, metrics, samples=rows, n=len(ss), **kw)  # type: ignore[arg-type]


def test_default_tolerances_by_family() -> None:
    assert default_tolerance("ss") == 0.5 and default_tolerance("s_iou") == 0.5
    assert default_tolerance("cider") == 2.0 and default_tolerance("meteor") == 0.3
    assert default_tolerance("relative_score") == 2.0 and default_tolerance("pq") == 0.5
    assert default_tolerance("something_new") == 1.0
    assert parse_tolerances(["ss=1.5", "cider=0"]) == {"ss": 1.5, "cider": 0.0}
    for bad in ("ss", "ss=x", "=1", "ss=-1"):
        with pytest.raises(ConfigError):
            parse_tolerances([bad])


def test_paired_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    diffs = np.random.default_rng(1).normal(-2.0, 5.0, size=400)
    low, high = paired_bootstrap(diffs)
    assert (low, high) == paired_bootstrap(diffs)  # same seed, same interval
    assert low < diffs.mean() < high
    # Width ≈ 2 × 1.96 × sd / sqrt(n) for a mean.
    expected = 2 * 1.96 * diffs.std() / np.sqrt(len(diffs))
    assert abs((high - low) - expected) < 0.15 * expected
    assert paired_bootstrap(np.zeros(50)) == (0.0, 0.0)


def test_drop_beyond_tolerance_is_a_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = list(rng.uniform(60, 100, size=300))
    _per_sample_run(tmp_path / "base", base)
    _per_sample_run(tmp_path / "cand", [v - 3.0 for v in base])
    out = tmp_path / "cmp.json"
    code = main(["compare", str(tmp_path / "cand"), str(tmp_path / "base"), "--json", str(out)])
    assert code == 1
    report = json.loads(out.read_text())
    ss = next(m for m in report["metrics"] if m["metric"] == "ss")
    assert ss["status"] == "regression" and report["regressed"] is True
    assert ss["delta"] == pytest.approx(-3.0) and ss["n_paired"] == 300
    assert ss["ci_low"] == pytest.approx(-3.0) and ss["ci_high"] == pytest.approx(-3.0)
    # A wider tolerance lets the same drop through.
    assert main(["compare", str(tmp_path / "cand"), str(tmp_path / "base"), "--tolerance", "ss=3.5"]) == 0


def test_a_drop_the_sample_cannot_distinguish_from_noise_passes(tmp_path: Path) -> None:
    base = [80.0] * 10
    _per_sample_run(tmp_path / "base", base)
    _per_sample_run(tmp_path / "cand", [80.0] * 9 + [20.0])  # one sample flips: mean -6
    cmp = compare_runs(load_run(tmp_path / "cand"), load_run(tmp_path / "base"))
    ss = next(m for m in cmp.metrics if m.metric == "ss")
    assert ss.delta == pytest.approx(-6.0)
    assert ss.ci_high == 0.0 and ss.ci_low is not None and ss.ci_low < -6.0
    assert ss.status == "noise" and not cmp.regressed


def test_aggregate_only_metrics_use_the_tolerance(tmp_path: Path) -> None:
    write_run(tmp_path / "base", "ade20k_ovseg", "m", {"pq": 40.0, "ap": 30.0, "miou": 28.0})
    write_run(tmp_path / "cand", "ade20k_ovseg", "m", {"pq": 39.6, "ap": 28.0, "miou": 29.0})
    cmp = compare_runs(load_run(tmp_path / "cand"), load_run(tmp_path / "base"))
    status = {m.metric: m.status for m in cmp.metrics}
    assert status == {"pq": "ok", "ap": "regression", "miou": "improved"}
    assert all(m.ci_low is None for m in cmp.metrics)


def test_yes_ratio_is_reported_not_gated(tmp_path: Path) -> None:
    write_run(tmp_path / "base", "pope_random", "m", {"accuracy": 85.0, "yes_ratio": 50.0})
    write_run(tmp_path / "cand", "pope_random", "m", {"accuracy": 85.0, "yes_ratio": 30.0})
    assert main(["compare", str(tmp_path / "cand"), str(tmp_path / "base")]) == 0


def test_refuses_different_card_or_data_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "base", "lvis_cls", "m", {"ss": 60.0})
    write_run(tmp_path / "card", "lvis_cls", "m", {"ss": 60.0}, card_hash="e" * 64)
    write_run(tmp_path / "data", "lvis_cls", "m", {"ss": 60.0}, data_files={"/data/ann.json": "f" * 64})
    write_run(
        tmp_path / "moved",
        "lvis_cls",
        "m",
        {"ss": 60.0},
        data_files={"/elsewhere/ann.json": "d" * 64},
    )
    base = str(tmp_path / "base")
    assert main(["compare", str(tmp_path / "card"), base]) == 2
    assert "task card hashes differ" in " ".join(capsys.readouterr().err.split())
    assert main(["compare", str(tmp_path / "data"), base]) == 2
    assert "data file hashes differ" in " ".join(capsys.readouterr().err.split())
    assert main(["compare", str(tmp_path / "moved"), base]) == 0  # same bytes, other path
    assert main(["compare", str(tmp_path / "card"), base, "--force"]) == 0
    assert "forced past: task card hashes differ" in capsys.readouterr().out


# ---------------------------------------------------------------------- end to end
def _evalkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def replay_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shapes_cls run twice with the same replay predictions, once with degraded ones."""
    from evalkit.task import get_task

    root = tmp_path_factory.mktemp("replay")
    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({}, command="score")).samples[:240]
    good = [{"id": s.id, "text": category_phrase(str(s.target))} for s in samples]
    # Degraded: every third region loses its colour word (SS drops by several points).
    bad = [
        {"id": r["id"], "text": r["text"].split()[-1] if k % 3 == 0 else r["text"]}
        for k, r in enumerate(good)
    ]
    for name, rows in (("good", good), ("bad", bad)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for out, preds in (("first", "good"), ("again", "good"), ("worse", "bad")):
        run_replay("shapes_cls", root / f"{preds}.jsonl", root / out, "--limit", "240")
    return root


def test_a_run_before_a_card_moved_to_include_compares_with_one_after(tmp_path: Path) -> None:
    """pope_random now inherits through include:; a run recorded under the hash its card had
    before (its previous_hashes) is the same benchmark, not a card mismatch."""
    before = json.loads((REPO / "tests" / "layout_before_move.json").read_text())["card_sha256"]
    now = CardCatalog().load("pope_random").card_hash
    assert before["pope_random"] != now
    metrics = {"accuracy": 80.0, "f1": 80.0}
    write_run(tmp_path / "old", "pope_random", "m", metrics, card_hash=before["pope_random"])
    write_run(tmp_path / "new", "pope_random", "m", metrics, card_hash=now)
    write_run(tmp_path / "other", "pope_random", "m", metrics, card_hash=before["pope_popular"])
    assert mismatches(load_run(tmp_path / "new"), load_run(tmp_path / "old")) == []
    assert mismatches(load_run(tmp_path / "other"), load_run(tmp_path / "new"))  # another split


def test_rerun_of_the_same_predictions_passes(replay_runs: Path) -> None:
    done = _evalkit("compare", str(replay_runs / "again"), str(replay_runs / "first"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| ss |" in done.stdout and "+0.00" in done.stdout and "no regression" in done.stdout


def test_a_worse_checkpoint_fails_the_gate(replay_runs: Path) -> None:
    out = replay_runs / "cmp.json"
    done = _evalkit("compare", str(replay_runs / "worse"), str(replay_runs / "first"), "--json", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    ss = next(m for m in json.loads(out.read_text())["metrics"] if m["metric"] == "ss")
    assert ss["status"] == "regression" and ss["delta"] < -0.5 and ss["ci_high"] < 0
    assert ss["n_paired"] == 240
