"""The LLaMA decoder's linear topology, stated once.

Per decoder layer four groups of linears; the parts of a group share one input (so they fuse into one
matmul and share calibration statistics, smoothing scales and static input ranges):

    group    block      parts                        input norm                 tensor parallel
    qkv      self_attn  q_proj, k_proj, v_proj       input_layernorm            column (head rows)
    o        self_attn  o_proj                       - (attention output)       row
    gate_up  mlp        gate_proj, up_proj           post_attention_layernorm   column (FFN rows)
    down     mlp        down_proj                    - (silu(gate) * up)        row

plus the LM head (`lm_head`, vocab-parallel) after the final `model.norm`. The model, the statistics
hooks, the compressor (groups, rotations, sensitivity units), the TP plan and the format checks read it
from here; HF module names are "model.layers.{i}.{block}.{part}".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    name: str  # "qkv", "o", "gate_up", "down"
    block: str  # "self_attn" | "mlp" (the HF submodule of the decoder layer)
    parts: tuple[str, ...]
    input_norm: str | None  # the RMSNorm whose output is the group's input (None: another op's output)
    parallel: str  # "column" | "row" (runtime/linear.py LinearSpec.parallel)
    attr: str  # the runtime module's attribute on its block (runtime/model.py)

    @property
    def key(self) -> str:
        """The group's key suffix: its first part, e.g. "self_attn.q_proj" (statistics, method.groups)."""
        return f"{self.block}.{self.parts[0]}"

    def part_paths(self) -> tuple[str, ...]:
        return tuple(f"{self.block}.{p}" for p in self.parts)

    def modules(self, layer: int) -> list[str]:
        return [f"model.layers.{layer}.{self.block}.{p}" for p in self.parts]


QKV = Group("qkv", "self_attn", ("q_proj", "k_proj", "v_proj"), "input_layernorm", "column", "qkv")
O = Group("o", "self_attn", ("o_proj",), None, "row", "o_proj")
GATE_UP = Group("gate_up", "mlp", ("gate_proj", "up_proj"), "post_attention_layernorm", "column", "gate_up")
DOWN = Group("down", "mlp", ("down_proj",), None, "row", "down_proj")
GROUPS: tuple[Group, ...] = (QKV, O, GATE_UP, DOWN)  # the order of the forward pass
BY_NAME = {g.name: g for g in GROUPS}
LM_HEAD = "lm_head"

COLUMN_PARTS = frozenset(p for g in GROUPS if g.parallel == "column" for p in g.parts)
ROW_PARTS = frozenset(p for g in GROUPS if g.parallel == "row" for p in g.parts)
VOCAB_PARTS = frozenset({LM_HEAD})
PART_PATHS: tuple[str, ...] = tuple(pp for g in (QKV, O, GATE_UP, DOWN) for pp in g.part_paths())


def group_of_part(part: str) -> Group:
    for g in GROUPS:
        if part in g.parts:
            return g
    raise KeyError(part)


def layer_of(module: str) -> int | None:
    """3 for "model.layers.3.mlp.down_proj"; None for modules outside the decoder layers."""
    s = module.split(".")
    return int(s[2]) if len(s) > 2 and s[0] == "model" and s[1] == "layers" and s[2].isdigit() else None


def unit_of(module: str, unit: str) -> str:
    """The float-fallback unit of a module: its layer index ("layer" units) or the module name ("linear")."""
    return str(layer_of(module)) if unit == "layer" and layer_of(module) is not None else module
