"""The tasks/ layout: one folder per family, registry name = module name, the same tasks,
card hashes and request keys as before the move, a wheel that ships the families, and card
errors caught when the card is loaded."""

from __future__ import annotations

import hashlib
import json
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from evalkit.cards import CardCatalog
from evalkit.engine.store import prediction_key
from evalkit.protocol import PROTOCOLS
from evalkit.readers import READERS
from evalkit.records import Request
from evalkit.regions import Region
from evalkit.report.boards import builtin_boards, parse_board
from evalkit.task import get_task, task_names

REPO = Path(__file__).resolve().parents[1]
BEFORE = json.loads((Path(__file__).parent / "layout_before_move.json").read_text())
FAMILIES = [
    "caption",
    "closed_set",
    "gcg",
    "judged",
    "mdvp",
    "ovseg",
    "pope",
    "referring_cls",
    "refseg",
    "shapes",
    "sphinx_v",
    "vcr",
]
# Board columns whose tasks another family defines (SPHINX-V's closed-set numbers sit on the
# closed-set board beside RegionGPT's).
BOARD_ONLY = {"closed_set": {"lvis_binary_choice", "cocotext_regional_ocr"}}


def test_tasks_folder_holds_one_folder_per_family_with_its_cards_readers_and_protocol():
    assert (
        sorted(p.name for p in (REPO / "tasks").iterdir() if p.is_dir() and p.name != "__pycache__")
        == FAMILIES
    )
    catalog = CardCatalog()
    for name in catalog.names():
        loaded = catalog.load(name)
        family = REPO / "tasks" / str(loaded.family)
        assert (family / f"{name}.yaml").is_file()
        card = loaded.card
        if card.is_group:
            continue
        # The card's reader and protocol are modules of the same name, in its own family
        # (or, for the shapes views of real formats, a reader the family defines itself).
        assert (family / f"{card.reader}.py").is_file(), (name, card.reader)
        protocol_file = next((REPO / "tasks").glob(f"*/{card.protocol}.py"))
        assert READERS.get(card.reader).__module__ == f"evalkit.tasks.{loaded.family}.{card.reader}"
        assert PROTOCOLS.get(card.protocol).__module__.endswith(
            f".{protocol_file.parent.name}.{card.protocol}"
        )


def test_each_family_declares_its_board_whose_columns_are_tasks_it_defines():
    catalog = CardCatalog()
    boards = {b.name: b for b in builtin_boards()}
    assert [b.name for b in builtin_boards()] == [
        "referring_cls", "sphinx_v", "ovseg", "captioning", "pope", "judged", "mdvp", "vcr", "closed_set",
        "gcg", "refseg", "shapes",
    ]  # fmt: skip
    for family in FAMILIES:
        board = parse_board((REPO / "tasks" / family / "board.yaml").read_text(), family)
        assert boards[board.name] == board
        elsewhere = BOARD_ONLY.get(family, set())
        assert elsewhere <= board.tasks()
        for col in board.columns:
            loaded = catalog.load(col.task)  # every column names a real task
            assert (loaded.family == family) != (col.task in elsewhere), (family, col.task)
            # A per-group metric (relative_score/ocr) is one of the card's metrics' groups.
            assert col.metric.split("/")[0] in loaded.card.metrics, (col.task, col.metric)
    # The MDVP columns are evalkit's own tasks' domain scores (the tasks no card defined are gone).
    assert {(c.task, c.metric) for c in boards["mdvp"].columns} == {
        (f"mdvp_{kind}", f"relative_score/{domain}")
        for kind in ("box", "point")
        for domain in ("natural", "ocr", "multipanel", "screenshot")
    }


def test_the_same_tasks_and_card_hashes_as_before_the_move():
    # Every task of before the move is still there (tasks added since come on top).
    assert set(BEFORE["card_sha256"]) <= set(task_names())
    catalog = CardCatalog()
    rewritten = []
    for name, old_hash in BEFORE["card_sha256"].items():
        loaded = catalog.load(name)
        if loaded.card_hash != old_hash:
            # Only the cards that now inherit through include: changed, and each names the
            # hash it had, so rows stored under it are reused (see the store test below).
            assert loaded.card.include and old_hash in loaded.card.previous_hashes, name
            rewritten.append(name)
    assert sorted(rewritten) == [
        "ferret_refer_desc",
        "ferret_refer_desc_mask",
        "ferret_refer_reason",
        "ferret_refer_reason_mask",
        "pope_adversarial",
        "pope_popular",
        "pope_random",
    ]


@pytest.mark.parametrize("name", ["shapes_cls", "shapes_cap", "shapes_pope", "shapes_ovseg"])
def test_requests_are_byte_for_byte_those_before_the_move(name):
    import os

    root = Path(os.environ["EVALKIT_CACHE"])
    task = get_task(name)
    requests = task.build_requests(task.load_samples(task.resolve_data({}, "run")).samples)
    digest = hashlib.sha256()
    for r in requests:
        payload = r.payload()
        payload["image"] = str(Path(payload["image"]).relative_to(root)) if payload["image"] else None
        digest.update(json.dumps({"id": r.id, **payload}, sort_keys=True, separators=(",", ":")).encode())
    assert {"n": len(requests), "sha256": digest.hexdigest()} == BEFORE["requests"][name]


def test_store_key_formula_is_unchanged():
    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:6] = 1
    request = Request(
        "img#0", "img#0", "img.png", "What is <region>?", [Region.from_mask(mask)], {"max_new_tokens": 8}
    )
    # Values computed by evalkit 0.1 (commit 9136e5b) for the same request.
    assert request.payload_digest() == "d4257b71dcfcd5fed3ae13fd716c2bcead65fb445f6fb6f6cfd33dd3d7f28b89"
    assert (
        prediction_key("c" * 64, request, {"name": "x", "v": 1})
        == "c4e926889a57b43efc472b0daa6e92a5c3f3c740fb8914609896bc5cfb2cadd1"
    )


FLAT_CARD = """name: toy_cls
reader: osprey_json
protocol: referring_cls
data:
  annotations: {default: ANNOTATIONS}
  images: {default: IMAGES, needed_for: [run]}
prompt: "<image>\\nWhat is <region>?"
generation: {max_new_tokens: 8, temperature: 0.0}
metrics: [ss, s_iou]
"""


def _run_toy(cards: Path, out: Path, log: Path) -> dict:
    import tests.fake_adapter  # noqa: F401  (registers slowfake)
    from evalkit.cli import main

    args = ["--include", str(cards), "run", "--model", "slowfake", "--model-args", f"delay=0,log={log}"]
    assert main([*args, "--task", "toy_cls", "--output", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def test_a_store_written_under_a_cards_previous_hash_is_reused(tmp_path):
    """A flat card rewritten as include: + previous_hashes (what the move did to the POPE and
    Ferret cards) recomputes nothing: the old rows are adopted under the new key."""
    from tests.helpers import LVIS_NAMES, write_images, write_osprey_subset

    records = write_osprey_subset(tmp_path / "ann.json", LVIS_NAMES, 4)
    write_images(tmp_path / "images", records)
    flat = FLAT_CARD.replace("ANNOTATIONS", str(tmp_path / "ann.json")).replace(
        "IMAGES", str(tmp_path / "images")
    )
    cards, out, log = tmp_path / "cards", tmp_path / "run", tmp_path / "log.txt"
    cards.mkdir()
    (cards / "toy_cls.yaml").write_text(flat)
    first = _run_toy(cards, out, log)
    n = first["provenance"]["requests"]["total"]
    assert n > 4 and first["provenance"]["requests"]["generated"] == n
    computed = log.read_text().splitlines()
    assert len(computed) == n

    base, own = flat.split("prompt:", 1)
    (cards / "_toy_base.yaml").write_text(base.replace("name: toy_cls\n", ""))
    old_hash = hashlib.sha256(flat.encode()).hexdigest()
    (cards / "toy_cls.yaml").write_text(
        f"name: toy_cls\ninclude: [_toy_base.yaml]\nprevious_hashes: [{old_hash}]\nprompt:{own}"
    )
    rewritten = CardCatalog([cards]).load("toy_cls")
    assert rewritten.card_hash != old_hash and rewritten.card.reader == "osprey_json"
    second = _run_toy(cards, out, log)
    assert second["provenance"]["requests"] == {
        **first["provenance"]["requests"],
        "generated": 0,
        "reused": n,
    }
    assert second["metrics"] == first["metrics"]
    assert second["provenance"]["task_card_hash"] == rewritten.card_hash
    assert log.read_text().splitlines() == computed  # the adapter was asked nothing more

    # Without previous_hashes the same rewrite would have recomputed every request.
    (cards / "toy_cls.yaml").write_text(f"name: toy_cls\ninclude: [_toy_base.yaml]\nprompt:{own}")
    third = _run_toy(cards, tmp_path / "run", log)
    assert third["provenance"]["requests"]["generated"] == n


def test_misspelt_protocol_arg_fails_when_the_card_is_loaded(tmp_path, capsys):
    from evalkit.cli import main

    pope_card = "reader: pope_questions\nprotocol: pope\ndata:\n  questions: {default: /nowhere/q.json}\n"
    cards = {
        "typo_pope": "protocol_args: {lowercas: true}\n",
        "typed_pope": "protocol_args: {align: by_line}\nvariants:\n  x: {protocol_args: {lowercase: [1]}}\n",
    }
    (tmp_path / "cards").mkdir()
    for name, args in cards.items():
        (tmp_path / "cards" / f"{name}.yaml").write_text(
            f"name: {name}\n{pope_card}{args}prompt: '{{text}}'\n"
        )
    for task, expected in [
        ("typo_pope", "unknown arg 'lowercas' for protocol pope (allowed: align, lowercase)"),
        ("typed_pope", "arg 'align': Input should be 'question_id' or 'line_order'"),
    ]:
        assert main(["--include", str(tmp_path / "cards"), "samples", "--task", task]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"{task}.yaml: protocol_args" in lines[0] and expected in lines[0], lines
        assert "nowhere" not in lines[0]  # failed before any data was looked at


@pytest.mark.slow
def test_a_built_wheel_ships_every_family(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("evalkit-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # -S: no .pth files, so the editable install's finder cannot serve evalkit; the
    # dependencies come from site-packages, evalkit only from the wheel's copy.
    deps = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], *sys.argv[2:]];"
        "import evalkit, evalkit.tasks; from evalkit.task import task_names, get_task, load_card;"
        "assert evalkit.__file__.startswith(sys.argv[1]), evalkit.__file__;"
        "assert evalkit.tasks.__file__.startswith(sys.argv[1]), evalkit.tasks.__file__;"
        "[get_task(n) for n in task_names() if not load_card(n)[0].is_group];"
        "from evalkit.report.boards import builtin_boards;"
        f"assert len(builtin_boards()) == {len(builtin_boards())}, builtin_boards();"
        "print(' '.join(task_names()))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(target), *deps], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == task_names()  # the wheel lists what the source tree does
