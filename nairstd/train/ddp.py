"""Multi-process training through `torchrun` (DistributedDataParallel).

    torchrun --nproc_per_node 4 -m nairstd train --stage 2 --profile paper ...

torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; the trainer then joins a process group (NCCL on
CUDA, gloo on the CPU), wraps the model in DistributedDataParallel, shards each epoch with a
DistributedSampler, and lets rank 0 alone write files and print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialised_here: bool = False  # this call created the process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the torchrun environment (1, 0, 0 without it)."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when there is one; returns the info and this rank's device."""
    world, rank, local_rank = env_world()
    if world <= 1:
        return DistInfo(), device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        # Share the CPU cores between the processes instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    return DistInfo(world, rank, local_rank, created), device


def shutdown() -> None:
    """Leave the process group (at the end of the process: the CLI calls it after training).

    The trainer itself never destroys the group: a Stage-2 run that first trains its Stage-1 run
    uses one group for both, since re-creating a group on torchrun's store can hang.
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a float over the processes (the value itself without DDP)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())
