"""Adapters: the models under test, behind one small protocol.

An adapter takes :class:`~evalkit.records.Request`s and yields
:class:`~evalkit.records.Prediction`s as they finish, in any order. It declares the region
kinds it takes natively (``region_kinds``); the engine converts the others before the
adapter sees them and records each conversion. Adapters never read task cards.

Register a factory with ``@register_model("name")``; third-party packages do the same from a
module named in the ``evalkit.models`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from evalkit.errors import ConfigError
from evalkit.records import Capability, Prediction, Request
from evalkit.registry import Registry


class Adapter(ABC):
    name: ClassVar[str] = ""
    region_kinds: ClassVar[frozenset[str]] = frozenset({"mask", "box", "points", "scribble"})
    # The request kinds it answers (records.Capability); the engine refuses a request that
    # needs another before any model work (e.g. likelihood ranking asked of an API model).
    serves: ClassVar[frozenset[Capability]] = frozenset({"generate"})

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model's outputs: checkpoint hashes, code version, settings."""

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        """Answer every request; yield each prediction as soon as it is ready."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, GPU memory)."""


def check_serves(adapter: Adapter, requests: Sequence[Request], task: str) -> None:
    """One line, before any model work, when ``adapter`` cannot answer some request."""
    needed: set[Capability] = set()
    for request in requests:
        needed |= request.needs()
    missing = sorted(needed - adapter.serves)
    if missing:
        raise ConfigError(
            f"model {adapter.name} cannot serve task {task}: it needs {', '.join(missing)} "
            f"but the adapter serves only {', '.join(sorted(adapter.serves))}"
        )


AdapterFactory = Callable[..., Adapter]

MODELS: Registry[AdapterFactory] = Registry("model", "evalkit.models", "evalkit.models")


def register_model(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    return MODELS.register(name)


def parse_model_args(text: str | None) -> dict[str, str]:
    """``k=v,k=v`` -> dict. Values stay strings; each adapter converts what it needs."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(f"--model-args: {part!r} is not key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def build_adapter(name: str, args: dict[str, str]) -> Adapter:
    factory = MODELS.get(name)
    try:
        return factory(**args)
    except TypeError as exc:
        raise ConfigError(f"model {name}: bad --model-args {args}: {exc}") from exc
