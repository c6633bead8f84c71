"""hf-vlm generation throughput: batched ``generate`` vs one request per ``generate``.

    python benchmarks/hf_vlm_throughput.py                    # 64 shapes_cls regions, batch 16
    python benchmarks/hf_vlm_throughput.py --requests 200 --batch-size 32 --region text

A tiny random LLaVA (tests/hf_vlm_helpers.py: CLIP ViT 1 layer, Llama 2 layers 32 wide, built
offline into a temporary folder) answers shapes_cls val regions on the CPU through the hf-vlm
adapter twice: left-padded batches of ``--batch-size`` requests, and one request per
``generate`` (``batch_size=1``). The greedy outputs must be identical; both rates are printed
as requests/s. The tiny model's answers are noise, so each runs the task's full 16 new tokens
(EOS is rare): the ratio measures batching, not early stopping. The last line is
``speedup_vs_sequential=<ratio>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.hf_vlm_helpers

from evalkit.engine.generate import adapt_regions
from evalkit.models.hf_vlm.adapter import HfVlmAdapter
from evalkit.records import Prediction, Request
from evalkit.task import get_task
from tests.hf_vlm_helpers import build_tiny_llava


def shapes_requests(limit: int) -> list[Request]:
    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({})).samples[:limit]
    return task.build_requests(samples)


def timed(adapter: HfVlmAdapter, requests: list[Request]) -> tuple[float, dict[str, Prediction]]:
    ready = [adapt_regions(adapter, r)[0] for r in requests]  # as the engine sends them
    start = time.perf_counter()
    out = {p.request_id: p for p in adapter.generate(ready)}
    return time.perf_counter() - start, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64, help="shapes_cls val regions")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--region", default="som", choices=["som", "crop", "text"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    requests = shapes_requests(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_llava(Path(tmp) / "llava")
        batched = HfVlmAdapter(str(path), region=args.region, device="cpu", batch_size=args.batch_size)
        sequential = HfVlmAdapter(str(path), region=args.region, device="cpu", batch_size=1)
        timed(batched, requests[:4])  # warm-up: first-call allocations and kernels
        batched_s, fast = timed(batched, requests)
        sequential_s, slow = timed(sequential, requests)
    same = sum(fast[r.id].token_ids == slow[r.id].token_ids for r in requests)
    tokens = sum(len(fast[r.id].token_ids or []) for r in requests)
    print(f"requests: {len(requests)} shapes_cls regions, region={args.region}, {tokens} tokens generated")
    print(
        f"batched (batch_size={args.batch_size}): {batched_s:.2f} s, {len(requests) / batched_s:.1f} requests/s"
    )
    print(f"sequential (batch_size=1): {sequential_s:.2f} s, {len(requests) / sequential_s:.1f} requests/s")
    print(f"identical greedy outputs: {same}/{len(requests)}")
    if same != len(requests):
        print("batched and sequential outputs differ", file=sys.stderr)
        return 1
    print(f"speedup_vs_sequential={sequential_s / batched_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
