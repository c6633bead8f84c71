"""Likelihood-ranking tasks: ``shapes_choice`` (rank the 33 shapes names for each region)
scored from choice scores, from a predictions file, and run with osprey-tiny; clear errors
for bad choice scores and for a model that cannot rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalkit.tasks.closed_set.choice_ranking import ChoiceQuestion
from evalkit.tasks.shapes.scenes import all_categories, category_phrase

from evalkit.cli import main
from evalkit.errors import PredictionsError
from evalkit.metrics.choice import choice_accuracy, ranked_choice
from evalkit.outputs import parse_prediction
from evalkit.records import Prediction
from evalkit.task import get_task
from tests.helpers import run_replay

VOCAB = [category_phrase(c) for c in all_categories()]


def test_ranked_choice_and_accuracy_by_hand() -> None:
    # sums: -2.0 beats -2.5; per token: -2.5 / 5 = -0.5 beats -2.0 / 2 = -1.0
    assert ranked_choice([-2.0, -2.5], [2, 5]) == 0
    assert ranked_choice([-2.0, -2.5], [2, 5], length_normalise=True) == 1
    assert ranked_choice([-1.0, -1.0, -3.0], [1, 1, 1]) == 0  # tie: first listed
    assert choice_accuracy([0, 2, 2, 1], [0, 2, 1, 1]) == 75.0
    assert choice_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        ranked_choice([], [])


def test_shapes_choice_offers_the_whole_vocabulary_and_scores_the_best_choice() -> None:
    task = get_task("shapes_choice")
    read = task.load_samples({})
    samples = read.samples[:4]
    assert len(VOCAB) == 33 and "house roof" in VOCAB and "red circle" in VOCAB
    for s in samples:
        info = s.info(ChoiceQuestion)
        assert info.choices == VOCAB and info.choices[info.answer] == category_phrase(str(s.target))
    requests = task.build_requests(samples)
    assert all(r.choices == tuple(VOCAB) and r.needs() == {"rank"} for r in requests)
    # Samples 0 and 1 right (their answer scored best), 2 wrong, 3 right only per token.
    outputs = {}
    for k, s in enumerate(samples):
        answer = s.info(ChoiceQuestion).answer
        other = (answer + 1) % 33
        scores, tokens = [-9.0] * 33, [3] * 33
        if k < 2:
            scores[answer] = -1.0
        elif k == 2:
            scores[other] = -1.0
        else:
            scores[answer], tokens[answer] = -4.0, 8  # -0.5 per token
            scores[other], tokens[other] = -3.0, 2  # -1.5 per token, but the larger sum
        outputs[s.id] = Prediction(s.id, "", choice_logprobs=scores, choice_tokens=tokens)
    scored = task.score(samples, outputs, {})
    assert scored.metrics == {"acc": 50.0}
    assert [row["acc"] for row in scored.per_sample] == [100.0, 100.0, 0.0, 0.0]
    normalised = get_task("shapes_choice", "length_normalised").score(samples, outputs, {})
    assert normalised.metrics == {"acc": 75.0}


def test_rankings_replay_from_a_predictions_file(tmp_path: Path) -> None:
    task = get_task("shapes_choice")
    samples = task.load_samples({}).samples[:3]
    lines = []
    for s in samples:
        scores = [-5.0] * 33
        scores[s.info(ChoiceQuestion).answer] = -0.5
        lines.append({"id": s.id, "text": "", "choice_logprobs": scores, "choice_tokens": [2] * 33})
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    results = run_replay("shapes_choice", preds, tmp_path / "run", "--limit", "3")
    assert results["metrics"] == {"acc": 100.0} and results["n"] == 3


def test_bad_choice_scores_are_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with pytest.raises(PredictionsError, match='line 4.*"choice_logprobs" and "choice_tokens" go together'):
        parse_prediction(path, {"id": "a", "text": "", "choice_logprobs": [-1.0]}, "line 4")
    with pytest.raises(PredictionsError, match="must be a list of finite numbers"):
        parse_prediction(
            path, {"id": "a", "text": "", "choice_logprobs": ["x"], "choice_tokens": [1]}, "line 2"
        )
    with pytest.raises(PredictionsError, match="one value per choice"):
        parse_prediction(
            path, {"id": "a", "text": "", "choice_logprobs": [-1.0], "choice_tokens": [1, 2]}, "line 2"
        )
    ok = parse_prediction(
        path, {"id": 7, "text": "x", "choice_logprobs": [-1, -2.5], "choice_tokens": [1, 2]}, "l"
    )
    assert ok == Prediction("7", "x", choice_logprobs=[-1.0, -2.5], choice_tokens=[1, 2])


def test_a_model_that_cannot_rank_is_refused_before_any_model_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = tmp_path / "texts.jsonl"
    preds.write_text("")
    code = main(["run", "--model", "api", "--model-args", "model=m,base_url=http://127.0.0.1:9", "--task",
                 "shapes_choice", "--limit", "2", "--output", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "cannot serve task shapes_choice: it needs rank" in err[0]
    assert not (tmp_path / "run" / "store.sqlite").exists()


@pytest.mark.slow
def test_osprey_tiny_ranks_the_shapes_names_well_above_chance(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--model",
                "osprey-tiny",
                "--task",
                "shapes_choice",
                "--limit",
                "40",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 40 and results["metrics"]["acc"] >= 60.0  # chance: 100 / 33 = 3.03
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert len(row["choice_logprobs"]) == 33 and len(row["choice_tokens"]) == 33
