"""Model hyper-parameters, read from and written to HF `config.json` form."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError


@dataclass
class ModelConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise UserError(
                    f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                    f"{self.num_attention_heads}; set head_dim in config.json"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}: fix config.json"
            )

    @property
    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return list(self.eos_token_id) if isinstance(self.eos_token_id, (list, tuple)) else [self.eos_token_id]

    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> "ModelConfig":
        mt = d.get("model_type", "llama")
        if mt not in ("llama", "mistral"):
            raise UserError(f"model_type {mt!r} is not a LLaMA-family model; llama-compress reads model_type 'llama'")
        rope_theta = d.get("rope_theta")
        rope_scaling = d.get("rope_scaling")
        rp = d.get("rope_parameters")  # transformers >= 5 nests rope settings here
        if isinstance(rp, dict):
            rope_theta = rp.get("rope_theta", rope_theta)
            if rp.get("rope_type", "default") != "default":
                rope_scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
        if rope_scaling is not None and rope_scaling.get("rope_type", rope_scaling.get("type")) in (None, "default"):
            rope_scaling = None
        known = {f for f in cls.__dataclass_fields__}  # noqa: C416
        try:
            return cls(
                hidden_size=d["hidden_size"],
                intermediate_size=d["intermediate_size"],
                num_hidden_layers=d["num_hidden_layers"],
                num_attention_heads=d["num_attention_heads"],
                num_key_value_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
                vocab_size=d["vocab_size"],
                max_position_embeddings=d.get("max_position_embeddings", 2048),
                rms_norm_eps=d.get("rms_norm_eps", 1e-5),
                rope_theta=rope_theta if rope_theta is not None else 10000.0,
                rope_scaling=rope_scaling,
                tie_word_embeddings=d.get("tie_word_embeddings", False),
                head_dim=d.get("head_dim"),
                bos_token_id=d.get("bos_token_id", 1),
                eos_token_id=d.get("eos_token_id", 2),
                pad_token_id=d.get("pad_token_id"),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except KeyError as e:
            raise UserError(f"config.json lacks the key {e.args[0]!r}: it is not a complete Llama config") from None

    def to_hf(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d.update({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
                  "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"})
        if d["rope_scaling"] is None:
            d.pop("rope_scaling")
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if d[k] is None:
                d.pop(k)
        return d

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        if not p.exists():
            raise UserError(f"no config.json at {p}: point --model at an HF model directory")
        return cls.from_hf(json.loads(p.read_text()))
