"""The registry of linear schemes: what a decoder linear of an artifact is, in one place.

A scheme is how one linear is stored and run: `float` (the anti_weight/ weight), `w8a8-static`,
`w8a8-dynamic`, `w8a8-packed-sparse`, `w8a16`, ... Each registers
  - its tensor kinds (the "<module>.<kind>" tensors it stores; each kind has one tensor-parallel
    slicing rule, `Layout`),
  - its runtime linear (`build`) and its float reference (`reference`, the arithmetic the runtime
    must match and the compressor scores sensitivity with),
  - whether its activations stay float (a float-fallback unit may use it) and whether
    `compress pack` may pack it.
The artifact manifest names the scheme of every decoder linear (`schemes`, format 1.2); binders,
the TP plan, `compress pack`/`cut`/`verify` read it from here. A new scheme is one file in this
package that calls `register` (and is imported at the bottom of this file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ..errors import UserError


class Layout:
    """How a tensor kind is laid out, which fixes how tensor parallelism slices it (runtime/parallel/plan.py).

    WEIGHT  [out, in]: column-parallel -> this rank's rows; row-parallel -> its input columns.
    PER_OUT [out]: column-parallel -> rows; row-parallel -> whole (every rank computes all outputs).
    BIAS    [out], added after the matmul: column -> rows; row -> rank 0 only (the all-reduce adds it once).
    PER_TENSOR [1]: whole on every rank.
    BLOCK   [1], an input rotation block: whole, and refused when blocks straddle a row-parallel cut.
    KV_HEADS [n_kv, P, head_dim], the attention-sink prefix's keys/values (runtime/kv_prefix.py): stored
            whole (a cut copies it to every rank); each rank keeps its plan's KV heads at load.
    """

    WEIGHT = "weight"
    PER_OUT = "per_out"
    BIAS = "bias"
    PER_TENSOR = "per_tensor"
    BLOCK = "block"
    KV_HEADS = "kv_heads"


# every tensor kind an artifact may hold as "<module>.<kind>" (plus the HF checkpoint's own), -> layout
KIND_LAYOUT: dict[str, str] = {"weight": Layout.WEIGHT, "bias": Layout.BIAS}
# the kinds stored in the artifact's own tensor files (<kind>.safetensors), in registration order
ARTIFACT_KINDS: list[str] = []


def register_kind(kind: str, layout: str) -> None:
    if KIND_LAYOUT.get(kind, layout) != layout:
        raise ValueError(f"tensor kind {kind!r} registered with two layouts")
    KIND_LAYOUT[kind] = layout
    if kind not in ARTIFACT_KINDS and kind not in ("weight", "bias"):
        ARTIFACT_KINDS.append(kind)


class Tensors(Protocol):
    """Name -> tensor access (an ArtifactReader, a sliced view for a TP rank, an in-memory dict)."""

    def has(self, name: str) -> bool: ...

    def tensor(self, name: str) -> torch.Tensor: ...


class BuildContext(Protocol):
    """What a scheme's build/reference reads: the binder (runtime/quant/binder.py QuantBinder)."""

    tensors: Tensors
    dtype: torch.dtype
    device: torch.device
    packed: Any  # PackedTensors of a packed artifact, else None


# build(ctx, module names, out_splits) -> nn.Module;  reference(ctx, names, out_splits, float weight or None)
Build = Callable[[BuildContext, list[str], tuple[int, ...]], nn.Module]
Reference = Callable[[BuildContext, list[str], tuple[int, ...], "torch.Tensor | None"], nn.Module]


@dataclass(frozen=True)
class Scheme:
    name: str
    label: str  # short kind shown in summaries ("float", "int8", "w8a16")
    kinds: dict[str, str]  # tensor kind -> Layout (required and optional)
    required: tuple[str, ...]  # kinds every module of this scheme must have
    float_activations: bool  # usable for a float-fallback unit (its inputs are not quantized)
    can_pack: bool  # compress pack may store its quant_weight as bitmask + values
    build: Build | None  # None: built by the float binder itself (the float scheme)
    reference: Reference | None
    summary: str = ""
    tags: dict[str, Any] = field(default_factory=dict)

    def missing(self, tensors: Tensors, module: str) -> list[str]:
        return [k for k in self.required if not tensors.has(f"{module}.{k}")]

    def foreign(self, tensors: Tensors, module: str) -> list[str]:
        """Artifact tensor kinds present for `module` that this scheme does not use."""
        return [k for k in ARTIFACT_KINDS if k not in self.kinds and tensors.has(f"{module}.{k}")]


SCHEMES: dict[str, Scheme] = {}
# manifest module values of format 1.0/1.1 ("modules": {name: "int8"|"float"}) are resolved by tensors
LEGACY = ("int8", "float")


def register(s: Scheme) -> Scheme:
    if s.name in SCHEMES:
        raise ValueError(f"scheme {s.name!r} registered twice")
    for k, lay in s.kinds.items():
        register_kind(k, lay)
    SCHEMES[s.name] = s
    return s


def get(name: str) -> Scheme:
    s = SCHEMES.get(name)
    if s is None:
        raise UserError(f"the artifact names linear scheme {name!r}, which this runtime does not know (it knows "
                        f"{', '.join(sorted(SCHEMES))}): upgrade llama-compress to read it")
    return s


def infer(tensors: Tensors, module: str) -> Scheme:
    """The scheme of a module from its tensors alone: artifacts of format 1.0/1.1 and in-memory tensors,
    whose int8 modules are W8A8 (static exactly when input_scale is present)."""
    if not tensors.has(f"{module}.quant_weight"):
        return SCHEMES["float"]
    return SCHEMES["w8a8-static" if tensors.has(f"{module}.input_scale") else "w8a8-dynamic"]


def schemes_of(manifest: dict[str, Any], tensors: Tensors, modules: list[str]) -> dict[str, Scheme]:
    """Module -> scheme for `modules`: the manifest's `schemes` (1.2) where it names them, else inferred."""
    named = manifest.get("schemes") or {}
    return {m: (get(named[m]) if m in named else infer(tensors, m)) for m in modules}


from . import w8a8 as _w8a8  # noqa: E402,F401  (registers float, w8a8-static, w8a8-dynamic)
from . import packed_sparse as _packed  # noqa: E402,F401
from . import w8a16 as _w8a16  # noqa: E402,F401
from .. import kv_prefix as _kv_prefix  # noqa: E402,F401  (registers k_prefix, v_prefix: not a linear scheme)
