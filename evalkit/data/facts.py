"""What evalkit knows about a task's data files: the card's data keys, completed by their
family's ``tasks/<family>/data.yaml``.

A card's text is hashed into every stored prediction's key, so the download pages, record
counts and known revisions (sha256 of public files) of the built-in tasks live beside the
cards, not in them: adding a known revision never invalidates a store. The file::

    # tasks/pope/data.yaml
    tasks:
      pope_random:
        samples: 3000            # what the reader gives on the paper's data (optional)
        data:
          questions:             # a data key of the card; fields as evalkit.cards.DataFacts
            url: https://github.com/RUCAIBox/POPE
            count: lines
            revisions:
              - {sha256: ac2524..., name: RUCAIBox/POPE output/coco, 2023-10-09, records: 3000}

A field the card sets on its data key wins over the family file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from evalkit.cards import BUILTIN_PACKAGE, DATA_FILE, DataFacts, DataKey, LoadedCard
from evalkit.errors import ConfigError


class TaskFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples: int | None = None  # samples the reader gives on the data the paper used
    data: dict[str, DataFacts] = {}


class FamilyFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: dict[str, TaskFacts] = {}


@cache
def family_facts(family: str) -> FamilyFacts:
    """The family's ``data.yaml`` (empty when it has none)."""
    entry = resources.files(BUILTIN_PACKAGE).joinpath(family).joinpath(DATA_FILE)
    if not entry.is_file():
        return FamilyFacts()
    source = f"tasks/{family}/{DATA_FILE}"
    try:
        raw = yaml.safe_load(entry.read_text("utf-8")) or {}
        return FamilyFacts.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid data facts: {exc}") from exc


@dataclass(frozen=True)
class CardData:
    """A task's data keys with everything known about them."""

    keys: dict[str, DataKey]
    samples: int | None


def card_data(loaded: LoadedCard) -> CardData:
    card = loaded.card
    facts = family_facts(loaded.family).tasks.get(card.name, TaskFacts()) if loaded.family else TaskFacts()
    unknown = sorted(set(facts.data) - set(card.data))
    if unknown:
        raise ConfigError(
            f"tasks/{loaded.family}/{DATA_FILE}: task {card.name} has no data key(s) {unknown}; "
            f"its keys are {sorted(card.data)}"
        )
    keys: dict[str, DataKey] = {}
    for name, key in card.data.items():
        known = facts.data.get(name)
        if known is None:
            keys[name] = key
            continue
        own = key.model_dump(exclude_unset=True)  # what the card itself wrote
        keys[name] = DataKey.model_validate({**known.model_dump(exclude_unset=True), **own})
    return CardData(keys, facts.samples)


def known_elsewhere(family: str | None, sha256: str) -> str | None:
    """Which other task's data key of the family knows these bytes (a file given to the wrong
    task, e.g. POPE adversarial questions to pope_random), as ``name (task: key)``."""
    if family is None:
        return None
    for task, facts in family_facts(family).tasks.items():
        for key, known in facts.data.items():
            for revision in known.revisions:
                if revision.sha256 == sha256:
                    return f"{revision.name} (known to {task}: {key})"
    return None
