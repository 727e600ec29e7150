"""The processes of a run: one, or ``torchrun --nproc_per_node N`` (DDP; gloo on CPU, nccl on
GPU), and the few collectives the training loop needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes, and its device."""

    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Process 0 writes the log and the checkpoints."""
        return self.rank == 0


def setup_world(device: str = "auto") -> World:
    """One process, or the torchrun world described by ``WORLD_SIZE``/``LOCAL_RANK`` (the
    process group is initialised here when torchrun has not done it).

    Example:
        >>> setup_world("cpu")
        World(rank=0, size=1, device=device(type='cpu'))
    """
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, torch.device("cuda" if want_cuda else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank()
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return World(rank, size, torch.device("cuda", local))
    return World(rank, size, torch.device("cpu"))


def all_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of ``value`` over the processes (``value`` itself in a single process)."""
    if world.size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world.size
    return value


def from_main(value: float, world: World) -> float:
    """Process 0's ``value`` in every process: for decisions that depend on wall time, which
    differs between processes, but must be the same in all of them."""
    if world.size == 1:
        return value
    shared = torch.tensor(value, dtype=torch.float64, device=world.device)
    dist.broadcast(shared, src=0)
    return float(shared)


def gather(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, in every process."""
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
