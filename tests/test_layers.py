"""One way data flows: no evalkit module imports a module of a higher layer (issue 12).

Layers, lowest first. A module may import its own layer and those below; the task plugins
(``evalkit.tasks``) are reached only through the registries (by name) and importlib.resources,
never imported by the library."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"evalkit.errors", "evalkit.registry", "evalkit.hashing", "evalkit.files", "evalkit.redact"},
    {"evalkit.regions", "evalkit.answers"},
    {"evalkit.records", "evalkit.images", "evalkit.render"},
    {
        "evalkit.cards",
        "evalkit.readers",
        "evalkit.metrics",
        "evalkit.judge",
        "evalkit.results",
        "evalkit.outputs",
    },
    {"evalkit.protocol", "evalkit.shown_regions", "evalkit.multi_region"},
    {"evalkit.task", "evalkit.models", "evalkit.tasks", "evalkit.data"},
    {"evalkit.engine"},
    {
        "evalkit.report",
        "evalkit.cli_args",
        "evalkit.data.commands",
    },  # cli_args: what cli and the command groups share
    {"evalkit.cli", "evalkit.__main__"},
]
# The tiny model's training script builds its data with the shapes generator: a tool, run by
# hand, never imported by the runtime (see test_runtime_never_imports_the_training_tool).
TOOLS = {"evalkit.models.osprey.training", "evalkit.models.glamm.training"}


def _layer(module: str) -> int:
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):  # the root package itself only by its own name
        prefix = ".".join(parts[:depth])
        for rank, layer in enumerate(LAYERS):
            if prefix in layer:
                return rank
    if module == "evalkit":
        return 0
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(path: Path, module: str) -> set[str]:
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "evalkit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module and node.module.split(".")[0] == "evalkit":
                out.add(node.module)
    return out


def _library() -> dict[str, Path]:
    found = {}
    for root, package in ((REPO / "evalkit", ("evalkit",)), (REPO / "tasks", ("evalkit", "tasks"))):
        for path in sorted(root.rglob("*.py")):
            parts = (*package, *path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = []
    for module, path in _library().items():
        if any(module == t or module.startswith(t + ".") for t in TOOLS):
            continue
        for target in _imports(path, module):
            if _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_library_never_imports_the_task_plugins() -> None:
    for module, path in _library().items():
        if module.startswith("evalkit.tasks") or any(module.startswith(t) for t in TOOLS):
            continue
        assert not [t for t in _imports(path, module) if t.startswith("evalkit.tasks")], module


def test_runtime_never_imports_the_training_tool() -> None:
    for tool in sorted(TOOLS):
        for module, path in _library().items():
            if not module.startswith(tool):
                assert not [t for t in _imports(path, module) if t.startswith(tool)], module
