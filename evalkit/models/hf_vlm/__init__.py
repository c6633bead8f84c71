"""``hf-vlm``: any local transformers image-text-to-text checkpoint as a region model.

``--model hf-vlm --model-args path=DIR[,region=auto|crop|som|text][,coords=NAME][,margin=F]
[,dtype=float32|bfloat16|float16][,device=cpu|cuda][,batch_size=N][,trust_remote_code=true]``

* ``path`` — a local folder as ``save_pretrained`` writes it (LLaVA-1.5 / LLaVA-NeXT,
  Qwen2-VL, Qwen2.5-VL, ...): loaded through ``AutoProcessor`` and
  ``AutoModelForImageTextToText``, nothing fetched. Remote code runs only with
  ``trust_remote_code=true``, which the fingerprint (and so ``results.json``) records.
* ``region`` — how regions reach the model (:mod:`~evalkit.models.hf_vlm.encodings`):
  ``crop`` (the box, widened by ``margin`` times its size per side, default 0), ``som``
  (numbered marks drawn), ``text`` (coordinates in the family's format, or ``coords=NAME``:
  :mod:`evalkit.models.region_text`), ``auto`` (default: the family's text format when it has
  one — LLaVA-1.5, Qwen2-VL, Qwen2.5-VL, Kosmos-2 — else ``som``). Each prediction's ``meta`` records
  the encoding (``region_encoding``, ``crop_box`` / ``crop_margin``, ``coords``).
* ``dtype`` (default float32 on CPU, bfloat16 on CUDA), ``device`` (default cuda when present),
  ``batch_size`` (requests per ``generate``, choices per ranking forward; default 8 on CPU,
  32 on CUDA).

Serves generation (batched, left-padded, per-request stopping), generated-token log-probs and
likelihood ranking of ``choices`` (:mod:`~evalkit.models.hf_vlm.generation`). Modules:
``loading`` (processor, model, files), ``encodings`` (regions into the turn), ``generation``
(batches, ranking), ``adapter`` (requests in, predictions out). torch and transformers are
imported only when the adapter is built.
"""

from __future__ import annotations

import inspect

from evalkit.errors import ConfigError
from evalkit.models import Adapter, register_model


@register_model("hf-vlm")
def hf_vlm(**args: str) -> Adapter:
    from evalkit.models.hf_vlm.adapter import HfVlmAdapter

    allowed = set(inspect.signature(HfVlmAdapter.__init__).parameters) - {"self"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ConfigError(f"hf-vlm: unknown model args {unknown} (known: {', '.join(sorted(allowed))})")
    if "path" not in args:
        raise ConfigError("hf-vlm needs --model-args path=CHECKPOINT_DIR (a local transformers folder)")
    return HfVlmAdapter(**args)
