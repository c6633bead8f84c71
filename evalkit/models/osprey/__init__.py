"""Osprey, the reference region-level VLM adapter (see ``adapter.py`` for model arguments).

* ``osprey7b`` / ``osprey-chat-7b`` — official checkpoints, ``--model-args path=DIR``;
* ``osprey-tiny`` — the small Osprey bundled with evalkit, trained on the shapes benchmark
  by ``python -m evalkit.models.osprey.training.train_tiny``.

torch and transformers are imported only when an adapter is built, so listing models and
tasks stays fast.

Modules, in the order one request meets them:

* ``config`` — ``config.json`` (LLaMA keys + ``mm_*``) and the vision sizes;
* ``checkpoint`` — official-layout checkpoints in (zero missing keys) and out;
* ``preprocess`` / ``prompting`` — the eval scripts' image preprocessing, the ``osprey_v1``
  template and tokenisation;
* ``convnext``, ``mask_extractor``, ``modeling`` — the model; ``OspreyModel.forward`` is
  the reference computation, top to bottom;
* ``generation`` — requests as jobs and next-token choice, shared by
* ``generate_naive`` (one request per ``generate``: the reference loop) and
  ``generate_cascade`` + ``cascade_decoder`` (a batch decoded over shared prefixes);
* ``adapter`` — requests in, predictions out.

Training the bundled tiny model lives in ``training/``; nothing here imports it.
"""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path

from evalkit.errors import ConfigError
from evalkit.models import Adapter, register_model


def bundled_tiny_path() -> Path:
    return Path(str(resources.files("evalkit") / "assets" / "osprey_tiny"))


def _build(name: str, args: dict[str, str], default_path: Path | None) -> Adapter:
    from evalkit.models.osprey.adapter import OspreyAdapter

    path = args.pop("path", None) or default_path
    if path is None:
        raise ConfigError(f"{name} needs --model-args path=CHECKPOINT_DIR")
    # The adapter's keyword parameters; ``name`` is ours and ``path`` was taken above.
    allowed = set(inspect.signature(OspreyAdapter.__init__).parameters) - {"self", "name", "path"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown model args {unknown} (known: path, {', '.join(sorted(allowed))})")
    return OspreyAdapter(name, path, **args)


@register_model("osprey7b")
def osprey7b(**args: str) -> Adapter:
    return _build("osprey7b", dict(args), None)


@register_model("osprey-chat-7b")
def osprey_chat_7b(**args: str) -> Adapter:
    return _build("osprey-chat-7b", dict(args), None)


@register_model("osprey-tiny")
def osprey_tiny(**args: str) -> Adapter:
    return _build("osprey-tiny", dict(args), bundled_tiny_path())
