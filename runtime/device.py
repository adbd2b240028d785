"""dtype and device names from the command line; the NPU backend only where torch_npu imports."""
from __future__ import annotations

import torch

from .errors import UserError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise UserError(f"--dtype {name!r} is not one of fp32, bf16, fp16") from None


def resolve_device(name: str) -> torch.device:
    name = name.lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but torch sees no CUDA device: use --device cpu, or install a CUDA build of torch")
        return torch.device(name)
    if name.startswith("npu"):
        try:
            import torch_npu  # noqa: F401
        except ImportError:
            raise UserError("--device npu needs the optional torch_npu package (pip install torch_npu, matching your "
                            "torch and CANN versions); use --device cpu otherwise") from None
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {name!r} is not one of cpu, cuda[:N], npu[:N]")


def distributed_backend(device: torch.device) -> str:
    return {"cuda": "nccl", "npu": "hccl"}.get(device.type, "gloo")
