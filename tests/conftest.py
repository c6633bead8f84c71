"""Shared test fixtures.

* ``shared_dir``: the project's ``../shared`` folder (real benchmark annotation files); tests
  that need it skip cleanly when it is absent (a user's clone). ``EVALKIT_SHARED`` overrides.
* The shapes benchmark is generated once per test session into a temporary cache unless
  ``EVALKIT_CACHE`` already points somewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_path() -> Path:
    return Path(os.environ.get("EVALKIT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if not (path / "fixtures").is_dir():
        pytest.skip(f"{path}/fixtures not present (the project's shared folder)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _shapes_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "EVALKIT_CACHE" not in os.environ:
        os.environ["EVALKIT_CACHE"] = str(tmp_path_factory.mktemp("evalkit-cache"))
