"""Preset recipes are typed and shared by compress quantize and compress sparse; unknown keys are refused."""
import json

import pytest

from runtime.errors import UserError


def test_every_shipped_preset_parses():
    from compress.recipe import QuantizeRecipe
    from runtime.presets import find_preset, preset_names

    for name in preset_names():
        r = QuantizeRecipe.parse(find_preset(name).quantize, name)
        assert r.disable_level.startswith("L") and r.calib_samples > 0
    assert QuantizeRecipe.parse(find_preset("7b").quantize, "7b").float_layers == (0, 1, 2, 8, 30, 31)


def test_unknown_recipe_key_is_refused_by_both_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from compress.cli import app
    from runtime.presets import configs_dir

    cfg = tmp_path / "configs"
    cfg.mkdir()
    d = json.loads((configs_dir() / "stories260k.json").read_text())
    d["quantize"]["smooth_alpha"] = 0.8  # the key that did nothing
    (cfg / "stories260k.json").write_text(json.dumps(d))
    monkeypatch.setattr("runtime.presets.configs_dir", lambda: cfg)
    for cmd in ("quantize", "sparse"):
        res = CliRunner().invoke(app, [cmd, "--model", "stories260k", "--out", str(tmp_path / cmd)])
        assert res.exit_code == 2 and "unknown recipe key(s) smooth_alpha" in res.output, res.output
        assert not (tmp_path / cmd).exists()


def test_command_line_wins_over_the_recipe():
    from compress.quantize import QuantizeOptions
    from compress.recipe import QuantizeRecipe, apply_common

    r = QuantizeRecipe(disable_level="L6", float_layers=(0, 1, 2, 8, 30, 31), calib_samples=128)
    o = QuantizeOptions()
    apply_common(o, r, disable_level=None, act_method=None, calib_samples=None, calib_seq_len=None, seed=None,
                 calib_data=None, float_units=None)
    assert o.float_units == ["0", "1", "2", "8", "30", "31"] and o.disable_level == 6 and o.calib_samples == 128
    o = QuantizeOptions()
    apply_common(o, r, disable_level="L2", act_method="dynamic", calib_samples=4, calib_seq_len=None, seed=3,
                 calib_data=None, float_units=None)
    assert o.float_units is None and o.disable_level == 2 and (o.act_method, o.calib_samples, o.seed) == ("dynamic", 4, 3)
    with pytest.raises(UserError, match="gptq_level"):
        QuantizeRecipe.parse({"gptq_level": 1}, "x")
