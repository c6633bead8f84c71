"""Likelihood ranking throughput: the cascade path vs one forward per choice.

    python benchmarks/choice_ranking.py                 # all shapes val regions, 1,203 names
    python benchmarks/choice_ranking.py --regions 100 --naive-regions 5   # a quick look

The bundled tiny Osprey ranks all 1,203 LVIS v1 category names (``lvis_v1_names.txt``,
``_`` as spaces) for every shapes val region with the cascade path (each request's prompt
once over its image's shared prefix, the names as rows over it), and the naive path (the
reference: prompt + name through the full model, image included, once per name) on the
first ``--naive-regions`` regions. Both as regions/s; the argmax of every region both ran
must agree, and their scores to 1e-5 of their size (sums of a few dozen log p in float32;
the unit tests pin 1e-5 absolute on small scores). The last line is ``speedup_vs_naive=<ratio>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evalkit.models.osprey import bundled_tiny_path
from evalkit.models.osprey.adapter import OspreyAdapter
from evalkit.records import Prediction, Request
from evalkit.task import get_task

NAMES = Path(__file__).with_name("lvis_v1_names.txt")


def lvis_names() -> list[str]:
    lines = [line.strip() for line in NAMES.read_text().splitlines()]
    return [line.replace("_", " ") for line in lines if line and not line.startswith("#")]


def ranking_requests(limit: int, names: list[str]) -> list[Request]:
    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({})).samples
    samples = samples[:limit] if limit else samples
    return [
        Request(r.id, r.sample_id, r.image_path, r.prompt, r.regions, {"temperature": 0.0}, tuple(names))
        for r in task.build_requests(samples)
    ]


def timed(adapter: OspreyAdapter, requests: list[Request]) -> tuple[float, dict[str, Prediction]]:
    start = time.perf_counter()
    out = {p.request_id: p for p in adapter.generate(requests)}
    return time.perf_counter() - start, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", default=str(bundled_tiny_path()), help="Osprey checkpoint")
    p.add_argument("--regions", type=int, default=0, help="shapes val regions for the cascade path, 0 = all")
    p.add_argument("--naive-regions", type=int, default=20, help="regions the naive path ranks")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = lvis_names()
    if len(names) != 1203:
        print(f"{NAMES}: expected 1,203 LVIS names, found {len(names)}", file=sys.stderr)
        return 1
    requests = ranking_requests(args.regions, names)
    kw = {"batch_size": args.batch_size} if args.batch_size else {}
    cascade = OspreyAdapter("osprey-tiny", args.path, device="cpu", mode="cascade", **kw)
    naive = OspreyAdapter("osprey-tiny", args.path, device="cpu", mode="naive")
    subset = requests[: args.naive_regions]
    cascade_s, fast = timed(cascade, requests)
    naive_s, slow = timed(naive, subset)
    fast_rate, naive_rate = len(requests) / cascade_s, len(subset) / naive_s
    same = 0
    worst = 0.0
    for r in subset:
        a, b = np.array(fast[r.id].choice_logprobs or []), np.array(slow[r.id].choice_logprobs or [])
        same += int(np.argmax(a) == np.argmax(b))
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0))))
    tokens = [len(ids) for ids in cascade.make_job(requests[0]).choice_ids or []]
    print(f"choices: {len(names)} LVIS v1 names, {np.mean(tokens):.1f} tokens each on average")
    print(f"cascade path: {len(requests)} regions in {cascade_s:.2f}s = {fast_rate:.2f} regions/s")
    print(f"naive path:   {len(subset)} regions in {naive_s:.2f}s = {naive_rate:.3f} regions/s")
    print(f"identical argmax: {same}/{len(subset)}; largest relative score difference {worst:.2e}")
    agree = same == len(subset) and worst <= 1e-5
    print(
        f"speedup_vs_naive={fast_rate / naive_rate:.1f}" if agree else "cascade and naive rankings disagree"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
