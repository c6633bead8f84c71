"""GLaMM, the second reference adapter: a region-level VLM that answers with masks.

* ``glamm`` — the official checkpoints (``MBZUAI/GLaMM-GranD-Pretrained``, ``-FullScope``,
  ``-GCG``, ``-RefSeg``, ``-RegCap-RefCOCOg``, ``-RegCap-VG``; MGLMM is built on it),
  ``--model-args path=DIR[,clip=CLIP_DIR]``;
* ``glamm-tiny`` — the same architecture at tiny width, bundled with evalkit.

torch and transformers are imported only when an adapter is built.

Modules, in the order one request meets them:

* ``config`` — ``config.json`` (LLaMA keys + LLaVA/GLaMM keys) and the vision sizes;
* ``checkpoint`` — official-layout checkpoints in (zero missing keys, a load report) and out;
* ``preprocess`` / ``prompting`` — the eval scripts' two image views, the ``llava_v1``
  template and the slow tokenizer's rules;
* ``sam_encoder``, ``sam_decoder``, ``region_encoder``, ``modeling`` — the model;
  ``GLaMMModel.forward`` is the reference computation, top to bottom;
* ``generation`` — one answer with a KV cache and the hidden state of each ``[SEG]``;
* ``adapter`` — requests in, predictions with masks out.
"""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path

from evalkit.errors import ConfigError
from evalkit.models import Adapter, register_model


def bundled_tiny_path() -> Path:
    return Path(str(resources.files("evalkit") / "assets" / "glamm_tiny"))


def _build(name: str, args: dict[str, str], default_path: Path | None) -> Adapter:
    from evalkit.models.glamm.adapter import GLaMMAdapter

    path = args.pop("path", None) or default_path
    if path is None:
        raise ConfigError(f"{name} needs --model-args path=CHECKPOINT_DIR")
    allowed = set(inspect.signature(GLaMMAdapter.__init__).parameters) - {"self", "name", "path"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown model args {unknown} (known: path, {', '.join(sorted(allowed))})")
    return GLaMMAdapter(name, path, **args)


@register_model("glamm")
def glamm(**args: str) -> Adapter:
    return _build("glamm", dict(args), None)


@register_model("glamm-tiny")
def glamm_tiny(**args: str) -> Adapter:
    if "path" not in args and not bundled_tiny_path().is_dir():
        # The tiny trained weights are made by the training tool; this build does not ship them.
        raise ConfigError(
            "glamm-tiny: no bundled weights in this build; train them with "
            "`python -m evalkit.models.glamm.training.train_tiny --out DIR` and pass --model-args path=DIR"
        )
    return _build("glamm-tiny", dict(args), bundled_tiny_path())
