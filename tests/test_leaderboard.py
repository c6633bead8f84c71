"""`evalkit leaderboard`: boards, bolding, provenance footnotes, determinism, csv/json/plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from evalkit.cli import main
from evalkit.report.baselines import load_baselines
from evalkit.report.leaderboard import build_tables, render_markdown
from evalkit.report.runs import load_runs
from tests.report_helpers import write_run

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "leaderboards" / "baselines.yaml"


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_run(root / "alpha" / "lvis_cls", "lvis_cls", "alpha", {"ss": 70.004, "s_iou": 30.0})
    write_run(root / "alpha" / "paco_cls", "paco_cls", "alpha", {"ss": 50.0, "s_iou": 20.0})
    write_run(
        root / "beta" / "lvis_cls",
        "lvis_cls",
        "beta",
        {"ss": 60.0, "s_iou": 40.0},
        created="2024-06-02T08:00:00+00:00",
    )
    write_run(root / "alpha" / "shapes_cls", "shapes_cls", "alpha", {"ss": 91.0, "s_iou": 80.0})
    write_run(root / "beta" / "shapes_cls", "shapes_cls", "beta", {"ss": 91.0, "s_iou": 79.0})
    write_run(
        root / "beta" / "shapes_pope",
        "shapes_pope",
        "beta",
        {"accuracy": 80.0, "precision": 90.0, "recall": 70.0, "f1": 78.75, "yes_ratio": 40.0},
    )
    write_run(
        root / "alpha" / "shapes_pope",
        "shapes_pope",
        "alpha",
        {"accuracy": 85.0, "precision": 85.0, "recall": 85.0, "f1": 85.0, "yes_ratio": 50.0},
    )
    return root


def _board(md: str, title: str) -> list[str]:
    """The table lines of one board of a rendered Markdown file."""
    lines = md.splitlines()
    start = lines.index(f"## {title}")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
    return table


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_runs_beside_baselines_with_bold_best(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "board.md"
    assert main(["leaderboard", str(runs), "--out", str(out), "--baselines", str(BASELINES)]) == 0
    md = out.read_text()
    table = _board(md, "Referring object classification")
    header = _cells(table[0])
    assert header == ["Model", "Input", "Source", "LVIS SS", "LVIS S-IoU", "PACO SS", "PACO S-IoU"]
    rows = {(_cells(r)[0].split(" [^")[0], _cells(r)[1]): _cells(r) for r in table[2:]}
    alpha = rows[("alpha", "—")]
    assert alpha[2] == "this run" and alpha[3:] == ["70.00", "30.00", "50.00", "20.00"]
    beta = rows[("beta", "—")]
    assert beta[3:5] == ["60.00", "40.00"] and beta[5:] == ["", ""]  # no PACO run for beta
    osprey = rows[("Osprey-7B", "mask")]
    assert osprey[2] == "reported: Osprey Tab. 3; SPHINX-V Tab. 3"
    assert osprey[3:] == ["65.24", "38.19", "73.06", "52.72"]
    # Best per column is bold: SPHINX-V (box) beats every run on LVIS; alpha's 70.00 is not bold.
    sphinx_box = rows[("SPHINX-V", "box")]
    assert sphinx_box[3:] == ["**87.06**", "**62.90**", "**79.88**", "**55.04**"]
    assert sum("**" in c for r in rows.values() for c in r[3:]) == 4


def test_shapes_board_ties_and_undirected_metrics(runs: Path) -> None:
    tables = build_tables(load_runs([runs]), load_baselines(BASELINES), all_boards=False)
    assert [t.board.name for t in tables] == ["referring_cls", "shapes"]
    md = render_markdown(tables)
    table = _board(md, "Embedded shapes benchmark")
    assert _cells(table[0]) == [
        "Model",
        "Source",
        "cls SS",
        "cls S-IoU",
        "POPE Acc",
        "POPE Prec",
        "POPE Rec",
        "POPE F1",
        "POPE Yes %",
    ]
    alpha, beta = (_cells(r) for r in table[2:])
    assert alpha[0].startswith("alpha [^") and beta[0].startswith("beta [^")
    # A tie is bold on both rows; the yes-ratio is never bold (50 % is not "better" than 40 %).
    assert alpha[2] == beta[2] == "**91.00**"
    assert alpha[3:5] == ["**80.00**", "**85.00**"] and beta[3:5] == ["79.00", "80.00"]
    assert beta[5] == "**90.00**" and alpha[8] == "50.00" and beta[8] == "40.00"


def test_footnotes_carry_provenance(runs: Path) -> None:
    runs_ = load_runs([runs])
    md = render_markdown(build_tables(runs_, load_baselines(None), False))
    notes = [line for line in md.splitlines() if line.startswith("[^")]
    assert len(notes) == len(runs_) == 7
    beta_lvis = next(n for n in notes if "`beta` on `lvis_cls`" in n)
    assert "protocol `default`" in beta_lvis and "run 2024-06-02" in beta_lvis
    assert "git 01234567" in beta_lvis and "task card `cccccccccccc`" in beta_lvis
    fp = next(r for r in runs_ if r.results.model == "beta" and r.results.task == "lvis_cls")
    assert f"model fingerprint `{fp.fingerprint()}` (fake)" in beta_lvis
    assert len(fp.fingerprint()) == 12
    # Every footnote is referenced from a row.
    for note in notes:
        marker = note.split(":", 1)[0]
        assert md.count(marker) == 2
    stable = render_markdown(build_tables(runs_, load_baselines(None), False), reproducible=True)
    assert "run 2024" not in stable and "git " not in stable


def test_output_is_deterministic(runs: Path, tmp_path: Path) -> None:
    paths = sorted(str(p) for p in runs.rglob("results.json"))
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    assert main(["leaderboard", *paths, "--out", str(a)]) == 0
    assert main(["leaderboard", *reversed(paths), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["leaderboard", str(runs), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_variant_runs_get_their_own_row_and_duplicates_are_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "lvis_cls", "m", {"ss": 1.0, "s_iou": 2.0})
    write_run(tmp_path / "b", "lvis_cls", "m", {"ss": 3.0, "s_iou": 4.0}, variant="reference")
    md = render_markdown(build_tables(load_runs([tmp_path]), load_baselines(None), False))
    labels = [_cells(r)[0].split(" [^")[0] for r in _board(md, "Referring object classification")[2:]]
    assert labels == ["m", "m (reference)"]
    write_run(tmp_path / "c", "lvis_cls", "m", {"ss": 5.0, "s_iou": 6.0})
    assert main(["leaderboard", str(tmp_path), "--no-baselines"]) == 2


def test_unknown_tasks_land_on_an_other_board(tmp_path: Path) -> None:
    write_run(tmp_path / "x", "my_task", "m", {"score": 12.5, "n_ok": 3.0})
    md = render_markdown(build_tables(load_runs([tmp_path]), load_baselines(BASELINES), False))
    table = _board(md, "Other tasks")
    assert _cells(table[0]) == ["Model", "Source", "my_task score", "my_task n_ok"]
    assert _cells(table[2])[2:] == ["12.50", "3.00"]


def test_csv_and_json_formats(runs: Path, tmp_path: Path) -> None:
    csv_out, json_out = tmp_path / "b.csv", tmp_path / "b.json"
    assert main(["leaderboard", str(runs), "--format", "csv", "--out", str(csv_out)]) == 0
    assert main(["leaderboard", str(runs), "--format", "json", "--out", str(json_out)]) == 0
    frame = pd.read_csv(csv_out, keep_default_na=False)
    records = json.loads(json_out.read_text())
    assert len(frame) == len(records)
    alpha = frame[(frame.model == "alpha") & (frame.task == "lvis_cls") & (frame.metric == "ss")]
    assert alpha.value.tolist() == [70.004] and alpha.kind.tolist() == ["run"]
    sphinx = [r for r in records if r["model"] == "SPHINX-V" and r["column"] == "LVIS SS"]
    assert {(r["input"], r["value"], r["best"]) for r in sphinx} == {
        ("point", 83.16, False),
        ("box", 87.06, True),
    }


def test_plots_next_to_the_markdown(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb" / "board.md"
    assert main(["leaderboard", str(runs), "--out", str(out), "--plots"]) == 0
    pngs = sorted(p.name for p in out.parent.glob("*.png"))
    assert pngs == ["board.referring_cls.png", "board.shapes.png"]
    assert (out.parent / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Embedded shapes benchmark](board.shapes.png)" in out.read_text()
    assert main(["leaderboard", str(runs), "--plots"]) == 2  # needs --out


def test_all_boards_without_runs_shows_the_papers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--baselines", str(BASELINES)]) == 0
    md = capsys.readouterr().out
    for title in (
        "Open-vocabulary segmentation",
        "Region captioning",
        "Object hallucination (POPE)",
        "GPT-4-judged description and reasoning",
        "MDVP-Bench",
    ):
        assert f"## {title}" in md
    ovseg = _board(md, "Open-vocabulary segmentation")
    osprey = next(_cells(r) for r in ovseg if r.startswith("| Osprey-7B |"))
    assert osprey[3:] == ["**50.64**", "**29.17**", "**49.78**", "**41.89**", "**41.24**", "29.63"]


def test_an_mdvp_run_fills_its_domain_columns_beside_sphinx_v(tmp_path: Path) -> None:
    """mdvp_box reports relative_score/<domain> (MDVP's summariser groups): those are the
    board's columns, so evalkit's own MDVP runs sit beside SPHINX-V Table 8."""
    scores = {"relative_score": 70.0, "relative_score/natural": 90.5, "relative_score/ocr": 60.25}
    write_run(
        tmp_path / "mine" / "mdvp_box", "mdvp_box", "mine", scores, adapter={"name": "f", "input": "box"}
    )
    tables = build_tables(load_runs([tmp_path]), load_baselines(BASELINES), all_boards=False)
    assert [t.board.name for t in tables] == ["mdvp"]
    md = render_markdown(tables, reproducible=True)
    lines = _board(md, "MDVP-Bench")
    head = _cells(lines[0])
    mine = next(_cells(line) for line in lines if line.startswith("| mine"))
    assert mine[head.index("Natural box")] == "**90.50**"  # above SPHINX-V's 88.82: the best
    assert mine[head.index("OCR box")] == "60.25"
    sphinx_box = next(_cells(line) for line in lines if line.startswith("| SPHINX-V |"))
    # SPHINX-V's box and point rows merge (inputs are in the columns): Table 8's numbers.
    assert sphinx_box[head.index("Natural box")] == "88.82"
    assert sphinx_box[head.index("Screenshot point")] == "**54.05**"  # Ferret-13B: 14.40
