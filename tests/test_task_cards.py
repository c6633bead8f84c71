"""Task cards: built-ins parse, variants apply, --include adds a folder of cards."""

import subprocess
import sys

import pytest

from evalkit.errors import ConfigError
from evalkit.task import get_task, load_card, task_names


def test_every_builtin_card_parses_and_binds_its_protocol():
    for name in task_names():
        card, source, _ = load_card(name)
        assert card.name == name and source.endswith(f"{name}.yaml")
        if not card.is_group:
            task = get_task(name)
            assert len(task.card_hash) == 64
            if card.protocol == "referring_cls":
                assert task.prompt.count("<region>") == 1


def test_reference_variant_overrides_generation_and_unknown_variant_fails():
    default = get_task("lvis_cls")
    reference = get_task("lvis_cls", "reference")
    assert default.generation == {"max_new_tokens": 32, "temperature": 0.0}
    assert reference.generation == {"max_new_tokens": 1024, "temperature": 0.2, "seed": 0}
    assert default.prompt == (
        "<image>\nThis provides an overview of the picture.\n"
        "What is the category of <region>? Using only one word or phrase."
    )
    with pytest.raises(ConfigError, match="no protocol variant 'fast'"):
        get_task("lvis_cls", "fast")


def test_include_adds_a_folder_of_cards(tmp_path):
    card = tmp_path / "cards"
    card.mkdir()
    (card / "my_cls.yaml").write_text(
        "name: my_cls\nreader: osprey_json\nprotocol: referring_cls\n"
        "data:\n  annotations: {default: /nowhere.json}\n"
        "prompt: 'Name <region>.'\ngeneration: {max_new_tokens: 4}\nmetrics: [ss, s_iou]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "--include", str(card), "tasks"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "my_cls" in proc.stdout
    (card / "broken.yaml").write_text("name: broken\nprotocol: referring_cls\nbogus_field: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "--include", str(card), "samples", "--task", "broken"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "broken.yaml: invalid task card" in proc.stderr
