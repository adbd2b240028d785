"""A preset's compression recipe (the "quantize" section of configs/*.json), typed, and the one place
where it is merged with command-line options for `compress quantize` and `compress sparse`.

An unknown key is refused (it would otherwise be ignored silently: `smooth_alpha` sat in every preset
for months doing nothing). Command-line options win over the preset; the preset over the defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import UserError


@dataclass(frozen=True)
class QuantizeRecipe:
    disable_level: str = "L0"  # Lk: k units in float
    fallback_unit: str = "layer"  # "layer" | "linear"
    float_layers: tuple[int, ...] | None = None  # the guide's hand-picked float layers (wins at its own level)
    act_method: str = "static"
    gptq: bool = False
    hadamard_block: int | None = None  # None: the largest power of two <= 512 dividing the FFN width
    fallback_weights: str = "float"  # "float" | "int8" (W8A16)
    calib_data: str | tuple[str, ...] = "${SHARED}/data/ceval"  # a list: the sources share the samples equally
    calib_samples: int = 64
    calib_seq_len: int = 512
    seed: int = 0
    kv_prefix: str | None = None  # attention-sink KV prefix token ids, "0" or "0,198" (None / "none": off)

    @classmethod
    def parse(cls, d: dict[str, Any], where: str) -> "QuantizeRecipe":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown recipe key(s) {', '.join(unknown)} in its \"quantize\" section: remove "
                            f"them or use one of {', '.join(known)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "float_layers":
                v = None if v is None else tuple(int(u) for u in v)
            elif v is not None and k in ("calib_samples", "calib_seq_len", "seed", "hadamard_block"):
                v = int(v)
            elif k == "calib_data" and isinstance(v, list):
                if not v:
                    raise UserError(f"{where}: calib_data is an empty list: name at least one calibration source")
                v = tuple(str(p) for p in v)
            elif k == "kv_prefix" and isinstance(v, list):
                v = ",".join(str(int(t)) for t in v)
            elif k == "gptq":
                v = bool(v)
            elif v is not None:
                v = str(v)
            kw[k] = v
        return cls(**kw)

    @classmethod
    def of(cls, ref) -> "QuantizeRecipe":
        """The recipe of a resolved --model (runtime.presets.ModelRef); defaults for a plain path."""
        if ref.preset is None:
            return cls()
        return cls.parse(ref.preset.quantize, f"preset {ref.preset.name} (configs/{ref.preset.name}.json)")


def apply_common(opts, recipe: QuantizeRecipe, *, disable_level: str | None, act_method: str | None,
                 calib_samples: int | None, calib_seq_len: int | None, seed: int | None,
                 calib_data: Path | list[Path] | None, float_units: list[str] | None,
                 fallback_unit: str = "layer") -> Path | list[Path]:
    """Fill the options both stages share (in place on `opts`, a QuantizeOptions); returns the calibration
    path. `float_units` given by hand fix the disable level; else the recipe's float_layers apply at their
    own level (layer units only)."""
    from runtime.presets import expand

    from .quantize import parse_level

    level_given = disable_level is not None
    opts.disable_level = parse_level(disable_level if level_given else recipe.disable_level)
    opts.act_method = act_method or recipe.act_method
    opts.calib_samples = calib_samples if calib_samples is not None else recipe.calib_samples
    opts.calib_seq_len = calib_seq_len if calib_seq_len is not None else recipe.calib_seq_len
    opts.seed = recipe.seed if seed is None else seed
    if float_units is not None:
        opts.float_units = float_units
        opts.disable_level = len(float_units)
    elif fallback_unit == "layer" and recipe.float_layers and \
            (not level_given or opts.disable_level == len(recipe.float_layers)):
        opts.float_units = [str(u) for u in recipe.float_layers]  # the guide's list for this model
        opts.disable_level = len(opts.float_units)
    if calib_data:
        return calib_data[0] if isinstance(calib_data, list) and len(calib_data) == 1 else calib_data
    if isinstance(recipe.calib_data, tuple):  # a mix of sources (calibration/data.py build_calibration)
        return [expand(p) for p in recipe.calib_data]
    return expand(recipe.calib_data)
