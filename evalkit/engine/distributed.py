"""Data-parallel evaluation under ``torchrun`` (one node or many).

* Requests are sharded by image, deterministically: images sorted by name, each assigned to
  the least-loaded rank (ties to the lowest rank). The same data gives the same shards on
  every machine, and an image's requests stay together so an adapter can share its prefix.
* No collective runs during generation, so uneven ranks cannot hit NCCL timeouts: each rank
  streams into its own store file; once it is done it sends its rows to rank 0 through a
  *gloo* group with a 24-hour timeout, and rank 0 merges, writes and scores.
* Resuming with another world size works: finished rows are found by key in every store file
  of the output directory, whatever rank wrote them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.records import Request


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def context_from_env() -> DistContext:
    """torchrun's RANK and WORLD_SIZE, or a single process (the adapter reads LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), world)


def init(ctx: DistContext) -> None:
    if not ctx.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo, not NCCL: the only collective carries Python objects after generation, and a
        # long timeout lets the fastest rank wait for the slowest.
        dist.init_process_group("gloo", timeout=dt.timedelta(hours=24))


def shard(requests: Sequence[Request], ctx: DistContext) -> list[Request]:
    """This rank's requests (all of them in a single process)."""
    if not ctx.distributed:
        return list(requests)
    by_image: dict[str, list[Request]] = {}
    for request in requests:
        by_image.setdefault(request.image_path or f"<no image>/{request.id}", []).append(request)
    load = [0] * ctx.world_size
    owner: dict[str, int] = {}
    # Largest images first (then by name) gives balanced shards; all of it is deterministic.
    for image in sorted(by_image, key=lambda k: (-len(by_image[k]), k)):
        rank = min(range(ctx.world_size), key=lambda r: (load[r], r))
        owner[image] = rank
        load[rank] += len(by_image[image])
    mine = {image for image, rank in owner.items() if rank == ctx.rank}
    return [r for r in requests if (r.image_path or f"<no image>/{r.id}") in mine]


def gather_to_main(payload: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's payload, on rank 0 (None elsewhere). A no-op list in one process."""
    if not ctx.distributed:
        return [payload]
    import torch.distributed as dist

    received: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(payload, received, dst=0)
    return received


def shutdown(ctx: DistContext) -> None:
    if not ctx.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
