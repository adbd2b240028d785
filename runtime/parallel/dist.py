"""The process group from torchrun's environment, rank-0-only output, and --bind-cpu pinning."""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import distributed_backend
from ..errors import UserError


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on the process that prints and writes files: rank 0, or the only process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


@dataclass
class TPContext:
    rank: int  # rank within `group`
    world: int
    group: object | None  # a ProcessGroup; None = the default (whole world) group
    device: torch.device


def rank_device(device: torch.device) -> torch.device:
    """cuda / npu: one device per local rank (LOCAL_RANK), unless an index was given."""
    if device.type in ("cuda", "npu") and device.index is None:
        return torch.device(device.type, int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init_from_env(device: torch.device) -> TPContext:
    """Join (or create) the default process group torchrun describes; backend by device type:
    gloo on CPU, nccl on CUDA, hccl on NPU."""
    world = env_world_size()
    dev = rank_device(device)
    if world == 1:
        return TPContext(0, 1, None, dev)
    if "MASTER_ADDR" not in os.environ:
        raise UserError("WORLD_SIZE > 1 but MASTER_ADDR is not set: launch through torchrun "
                        "(torchrun --nproc-per-node N -m runtime.cli run ...)")
    if not dist.is_initialized():
        backend = distributed_backend(dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        elif dev.type == "npu":
            torch.npu.set_device(dev)  # type: ignore[attr-defined]
        dist.init_process_group(backend=backend)
        atexit.register(_destroy)
    return TPContext(dist.get_rank(), dist.get_world_size(), None, dev)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def pin_cpu(local_rank: int | None = None, local_world: int | None = None) -> list[int]:
    """Pin this process to its own share of the CPU cores and use one thread per core.

    The node's allowed cores are cut into LOCAL_WORLD_SIZE contiguous blocks (neighbouring cores
    share caches); with more ranks than cores, ranks share cores round-robin, one thread each.
    Call before the first torch op so the thread pool starts on the right cores.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if local_world is None else local_world
    cores = sorted(os.sched_getaffinity(0))
    if local_world <= len(cores):
        per = len(cores) // local_world
        mine = cores[local_rank * per:(local_rank + 1) * per]
    else:
        mine = [cores[local_rank % len(cores)]]
    os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))
    return mine
