"""Distributed data parallel set-up from ``torchrun`` environment variables.

``torchrun --nproc-per-node N -m spinekit train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; the train loop then uses gloo on CPU and NCCL on
GPU, a ``DistributedSampler`` per process, and rank 0 alone writes logs,
checkpoints and runs validation.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on the process that writes outputs."""
    return rank() == 0


def init(device: torch.device) -> bool:
    """Initialise the process group when launched with WORLD_SIZE > 1; returns whether it did."""
    if world_size() <= 1 or (dist.is_initialized()):
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's boolean, shared with every process (for stopping decisions)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([1 if value else 0], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def cleanup() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
