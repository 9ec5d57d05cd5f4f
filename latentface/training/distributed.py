"""One process or many: PyTorch's own DDP under ``torchrun``, a plain process otherwise."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from latentface.training.config import TrainingError


def pick_device(flag: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU when there is one, else the CPU."""
    if flag == "auto":
        flag = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(flag)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {flag}: CUDA is not available here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


@dataclass
class Processes:
    """This process's place among the training processes (rank 0 alone logs and writes)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device_flag: str) -> "Processes":
        """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on GPUs), if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(0, 1, 0, pick_device(device_flag))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = pick_device(device_flag, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks (flags any rank raised)."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
