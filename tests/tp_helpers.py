"""Helpers of the tensor-parallel tests: torchrun launches, free ports, a small W8A8 artifact."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
    return env


def torchrun(args: list[str], nproc: int, extra: list[str] | None = None, timeout: float = 240,
             wait: bool = True):
    """`python -m torch.distributed.run` from this venv; standalone rendezvous unless `extra` says otherwise."""
    rdzv = extra if extra is not None else ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *rdzv, "--nproc-per-node", str(nproc), *args]
    p = subprocess.Popen(cmd, cwd=REPO, env=torch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    return finish(p, timeout)


def finish(p: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"torchrun timed out:\n{out}\n{err[-4000:]}")
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{out}\n{err[-6000:]}"
    return out


def make_w8a8_artifact(float_dir: Path, out: Path, calib_ids: torch.Tensor, dynamic: tuple[str, ...] = ()) -> Path:
    """A static W8A8 artifact in the project format: per-channel int8 weights, per-tensor input
    scale/offset from the min/max each linear's input takes on `calib_ids` (plain float model).
    down_proj rotates its input online (input_hadamard, block 8: aligned with every rank split the
    tests use), so TP = 1 comparisons cover the rotated int8 path too. Linears whose name ends with
    one of `dynamic` get per-token inputs instead (no input_scale), as compress sparse writes down_proj."""
    from runtime.engine import Engine
    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.quant import qmath
    from runtime.quant.artifact import ANTI_DIR, FORMAT_NAME, FORMAT_VERSION, write_manifest, write_quant_tensors

    src = open_source(float_dir)
    model = build_model(src)
    ranges: dict[str, list[float]] = {}

    had = 8

    def hook(names):
        def f(_m, inp):
            x = qmath.hadamard(inp[0], had) if names[0].endswith("down_proj") else inp[0]
            for n in names:
                lo, hi = ranges.get(n, [0.0, 0.0])
                ranges[n] = [min(lo, float(x.min())), max(hi, float(x.max()))]
        return f

    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}"
        layer.self_attn.qkv.register_forward_pre_hook(hook([f"{p}.self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj")]))
        layer.self_attn.o_proj.register_forward_pre_hook(hook([f"{p}.self_attn.o_proj"]))
        layer.mlp.gate_up.register_forward_pre_hook(hook([f"{p}.mlp.gate_proj", f"{p}.mlp.up_proj"]))
        layer.mlp.down_proj.register_forward_pre_hook(hook([f"{p}.mlp.down_proj"]))
    Engine(model).logits(calib_ids)
    tensors = {}
    for mod, (lo, hi) in sorted(ranges.items()):
        w = src.get(f"{mod}.weight")
        if mod.endswith("down_proj"):
            w = qmath.hadamard(w, had)
            tensors[f"{mod}.input_hadamard"] = torch.tensor([had], dtype=torch.int32)
        q, ws = qmath.quantize_weight(w)
        tensors[f"{mod}.quant_weight"] = q
        tensors[f"{mod}.weight_scale"] = ws
        if mod.endswith(dynamic or ("-",)):
            continue
        scale, offset = qmath.act_params(lo, hi)
        tensors[f"{mod}.deq_scale"] = ws * scale
        tensors[f"{mod}.input_scale"] = torch.tensor([scale], dtype=torch.float32)
        tensors[f"{mod}.input_offset"] = torch.tensor([offset], dtype=torch.float32)
    out.mkdir(parents=True)
    shutil.copytree(float_dir, out / ANTI_DIR)
    write_quant_tensors(out, tensors)
    write_manifest(out, {"format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
                         "source": {"name": float_dir.name}, "method": {"act_method": "static"}})
    return out
