"""Sharding attribution work across ``torch.distributed`` ranks (a ``torchrun`` launch).

Every rank builds the same plan of fact chunks, runs the chunks ``rank, rank + world, ...``
and the per-fact tensors are summed across ranks (each fact is filled on exactly one rank,
zeros elsewhere, so the sum is exact). Each chunk is computed exactly as in a one-process
run, so the numbers are identical to it.

Example:
    >>> rank, world = rank_and_world()      # (0, 1) without torch.distributed
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from neuronscope.attribution.engine import RawAttribution

__all__ = ["agree_min", "gather_raw", "is_distributed", "my_chunks", "rank_and_world"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def my_chunks(n_chunks: int) -> list[int]:
    """The chunk indices this rank runs (round robin)."""
    rank, world = rank_and_world()
    return list(range(rank, n_chunks, world))


def _device_for_collectives(tensor: torch.Tensor) -> torch.device:
    backend = dist.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _sum(tensor: torch.Tensor | None) -> torch.Tensor | None:
    if tensor is None:
        return None
    device = _device_for_collectives(tensor)
    work = tensor.to(device).clone()
    if work.dtype == torch.bool:
        work = work.to(torch.uint8)
        dist.all_reduce(work, op=dist.ReduceOp.MAX)
        return work.bool().cpu()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.cpu()


def gather_raw(raw: RawAttribution) -> RawAttribution:
    """Combine each rank's share (zeros where another rank worked) on every rank."""
    if not is_distributed():
        return raw
    return RawAttribution(_sum(raw.scores), _sum(raw.target_input), _sum(raw.target_baseline),
                          _sum(raw.position_scores), _sum(raw.position_mask), dict(raw.info))


def agree_min(value: int) -> int:
    """The smallest ``value`` over ranks (so that every rank plans the same chunks)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    device = _device_for_collectives(tensor)
    tensor = tensor.to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def describe() -> dict[str, Any]:
    rank, world = rank_and_world()
    return {"rank": rank, "world_size": world}
