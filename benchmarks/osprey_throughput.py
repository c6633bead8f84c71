"""Osprey throughput: evalkit's cascade path vs the official one-region-per-``generate`` loop.

    python benchmarks/osprey_throughput.py            # CPU, the bundled tiny Osprey, shapes val
    python benchmarks/osprey_throughput.py --gpu      # CUDA: 7B-shaped random model in bf16,
                                                      # 1,000 LVIS-style regions on 250 images

Both paths use the same weights and the same greedy decoding. The reference loop is what
the released eval scripts do: one ``generate`` per region, the vision tower run again for
every region. On CPU (fp32) the two must give token-identical outputs (asserted); in bf16
on a GPU different batch shapes may round differently, so the agreement rate is reported.
The last line is ``speedup_vs_reference_loop=<ratio>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.models.osprey import bundled_tiny_path
from evalkit.models.osprey.adapter import OspreyAdapter
from evalkit.models.osprey.config import OspreyConfig, VisionSpec
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import OspreyTokenizer
from evalkit.records import Request
from evalkit.regions import Region

LVIS_PROMPT = (
    "<image>\nThis provides an overview of the picture.\n"
    "What is the category of <region>? Using only one word or phrase."
)


def shapes_requests(limit: int) -> list[Request]:
    from evalkit.task import get_task

    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({})).samples
    samples = samples[:limit] if limit else samples
    return task.build_requests(samples)


def lvis_style_requests(directory: Path, n_images: int, per_image: int, max_new: int) -> list[Request]:
    """COCO-sized images with ``per_image`` blob-shaped masks each (LVIS objects are blobs)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n_images):
        h, w = int(rng.integers(400, 481)), 640
        path = directory / f"lvis_{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, compress_level=1)
        yy, xx = np.mgrid[0:h, 0:w]
        for k in range(per_image):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            ry, rx = rng.uniform(20, 120), rng.uniform(20, 160)
            mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
            rid = f"lvis_{i:04d}#{k}"
            out.append(
                Request(
                    rid,
                    rid,
                    str(path),
                    LVIS_PROMPT,
                    [Region.from_mask(mask)],
                    {"max_new_tokens": max_new, "temperature": 0.0},
                )
            )
    return out


def random_7b(device: str, layers: int) -> tuple[OspreyModel, OspreyTokenizer]:
    """Osprey-7B's shapes (LLaMA-7B decoder, ConvNeXt-L at 512²), random weights, bf16."""
    from evalkit.models.osprey.training.tiny import base_corpus, build_tokenizer

    tokenizer = OspreyTokenizer.wrap(build_tokenizer([*base_corpus(), LVIS_PROMPT], vocab_size=300))
    raw = {
        "model_type": "osprey",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "mm_hidden_size": 768,
        "mm_projector_type": "mlp2x_gelu",
        "evalkit_vision": VisionSpec().to_json(),
    }
    config = OspreyConfig.from_dict(raw, "7B-shaped benchmark config")
    with torch.device("meta"):
        model = OspreyModel(config)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # norms and layer scales
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    model.init_rotary()
    model.set_dtypes(torch.bfloat16, torch.bfloat16, vision_via=torch.float16).eval()  # the official mix
    return model, tokenizer


def timed(
    adapter: OspreyAdapter, requests: list[Request], repeats: int = 1
) -> tuple[float, dict[str, list[int]]]:
    """Best wall time of ``repeats`` runs (a shared machine adds noise, never speed)."""
    best = float("inf")
    preds: dict[str, list[int]] = {}
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        preds = {p.request_id: list(p.token_ids or []) for p in adapter.generate(requests)}
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, preds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="7B-shaped model in bf16 on CUDA")
    p.add_argument("--path", default=str(bundled_tiny_path()), help="checkpoint (CPU mode)")
    p.add_argument("--regions", type=int, default=0, help="shapes val regions, 0 = all (CPU)")
    p.add_argument("--images", type=int, default=250, help="LVIS-style images (--gpu)")
    p.add_argument("--per-image", type=int, default=4, help="regions per image (--gpu)")
    p.add_argument("--max-new-tokens", type=int, default=6, help="(--gpu: random weights never stop)")
    p.add_argument("--layers", type=int, default=32, help="decoder layers of the 7B shape (--gpu)")
    p.add_argument(
        "--reference-limit",
        type=int,
        default=200,
        help="regions timed in the reference loop (--gpu)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the best one counts")
    p.add_argument("--results", type=Path, help="append a line to this Markdown file (--gpu)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu needs a CUDA device", file=sys.stderr)
            return 2
        model, tokenizer = random_7b("cuda", args.layers)
        requests = lvis_style_requests(Path(tmp.name), args.images, args.per_image, args.max_new_tokens)
        reference_requests = requests[: args.reference_limit]
        cascade = OspreyAdapter.from_parts("osprey-7b-random", model, tokenizer, args.batch_size or 64)
        naive = OspreyAdapter.from_parts("osprey-7b-random", model, tokenizer, 1, mode="naive")
        timed(cascade, requests[:8])  # warm-up (kernels, allocator)
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        requests = shapes_requests(args.regions)
        reference_requests = requests
        cascade = OspreyAdapter("osprey-tiny", args.path, device="cpu", batch_size=args.batch_size)
        naive = OspreyAdapter("osprey-tiny", args.path, device="cpu", mode="naive")
    cascade_s, cascade_out = timed(cascade, requests, args.repeats)
    ref_s, ref_out = timed(naive, reference_requests, 1 if args.gpu else args.repeats)
    same = sum(cascade_out[r.id] == ref_out[r.id] for r in reference_requests)
    cascade_rate, ref_rate = len(requests) / cascade_s, len(reference_requests) / ref_s
    device = torch.cuda.get_device_name() if args.gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    print(
        f"evalkit cascade path: {len(requests)} regions on {len({r.image_path for r in requests})} "
        f"images in {cascade_s:.2f}s = {cascade_rate:.1f} regions/s"
    )
    print(f"reference loop:    {len(reference_requests)} regions in {ref_s:.2f}s = {ref_rate:.2f} regions/s")
    print(f"identical greedy outputs: {same}/{len(reference_requests)}")
    if not args.gpu and same != len(reference_requests):
        print("cascade path and reference loop disagree (fp32 must be token-identical)", file=sys.stderr)
        return 1
    speedup = cascade_rate / ref_rate
    if args.results is not None:
        new_file = not args.results.exists()
        with args.results.open("a") as fh:
            if new_file:
                fh.write(
                    "# Osprey throughput on GPU (`python benchmarks/osprey_throughput.py --gpu "
                    "--results benchmarks/RESULTS.md`)\n\n"
                    "| device | model | workload | evalkit regions/s | reference regions/s | speedup "
                    "| identical greedy outputs |\n|---|---|---|---|---|---|---|\n"
                )
            fh.write(
                f"| {device} | {args.layers}-layer 7B shape, bf16 | {len(requests)} regions / "
                f"{args.images} images | {cascade_rate:.1f} | {ref_rate:.2f} | {speedup:.1f}x | "
                f"{same}/{len(reference_requests)} |\n"
            )
    print(f"speedup_vs_reference_loop={speedup:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
