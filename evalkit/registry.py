"""A small name -> object registry with entry-point plugins (lm-evaluation-harness style).

Built-in modules register themselves on import. Readers and protocols live in the task
families (``evalkit.tasks.<family>.<name>``) and their registry name *is* their module name,
so a lookup imports just the module of that name (``reader: osprey_json`` imports
``evalkit.tasks.referring_cls.osprey_json``), not every family. Third-party packages register
through the ``evalkit.tasks`` / ``evalkit.models`` entry-point groups, whose targets are
imported the first time a name is not found or the registry is listed.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Generic, TypeVar

from evalkit.errors import ConfigError

T = TypeVar("T")


def _modules(package: str, depth: int) -> Iterator[tuple[str, str]]:
    """(full name, leaf name) of the public modules ``depth`` levels below ``package``."""
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        if info.name.startswith("_"):
            continue
        full = f"{package}.{info.name}"
        if depth == 1:
            yield full, info.name
        elif info.ispkg:
            yield from _modules(full, depth - 1)


@dataclass
class Registry(Generic[T]):
    """Names registered by ``builtin_package``'s modules ``depth`` levels down (1: the
    package's own modules, as ``evalkit.models``; 2: modules of its sub-packages, as the task
    families). With ``name_is_module`` a built-in must register under its module's name."""

    kind: str
    builtin_package: str
    entry_point_group: str | None = None
    depth: int = 1
    name_is_module: bool = False
    _items: dict[str, T] = field(default_factory=dict, init=False)
    _loaded: bool = field(default=False, init=False)
    _plugins_loaded: bool = field(default=False, init=False)

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            module = str(getattr(obj, "__module__", ""))
            if (
                self.name_is_module
                and module.startswith(self.builtin_package + ".")
                and module.rsplit(".", 1)[-1] != name
            ):
                raise ConfigError(f"{self.kind} {name!r} must live in a module named {name}.py ({module})")
            if name in self._items and self._items[name] is not obj:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _load_plugins(self) -> None:
        if self._plugins_loaded or not self.entry_point_group:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            ep.load()

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for full, _ in _modules(self.builtin_package, self.depth):
            importlib.import_module(full)
        self._load_plugins()

    def _load_named(self, name: str) -> None:
        """Import the built-in modules called ``name`` (cheap: no other module is imported)."""
        if self.name_is_module:
            for full, leaf in _modules(self.builtin_package, self.depth):
                if leaf == name:
                    importlib.import_module(full)
        if name not in self._items:
            self._load()

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_named(name)
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
