"""The streamed pass against independent references: its per-layer float forward reproduces transformers'
logits, and its streamed sensitivity scores equal the whole-model fake-quant scoring (compress/sensitivity.py)."""
import torch
import torch.nn.functional as F

from tests.conftest import make_tiny_hf


def test_layer_by_layer_float_stream_gives_transformers_logits(tmp_path):
    from transformers import LlamaForCausalLM

    from compress.stream.layers import StreamRunner, float_layer, layer_names
    from runtime.loaders import open_source

    hf_dir = make_tiny_hf(tmp_path / "m", layers=3, heads=4, kv_heads=2)
    src = open_source(hf_dir)
    cfg = src.config
    ids = torch.randint(0, cfg.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    x = F.embedding(ids, src.get("model.embed_tokens.weight")).float()
    runner = StreamRunner(cfg, ids.shape[1], torch.float32, batch=2)  # batches of 2 over 3 sequences
    for i in range(cfg.num_hidden_layers):
        x = runner.run(float_layer(cfg, i, {n: src.get(n) for n in layer_names(i)}, torch.float32), x)
    g = src.get("model.norm.weight")
    logits = F.rms_norm(x, g.shape, g, cfg.rms_norm_eps) @ src.get("lm_head.weight").t()
    ref = LlamaForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()(ids).logits
    torch.testing.assert_close(logits, ref, atol=2e-4, rtol=1e-4)


def test_streamed_layer_scores_equal_the_whole_model_kl(tmp_path, data_dir, stories_hf):
    """Layer u's score is KL(float || only u in int8) at the logits. The streamed pass gets it from perturbed
    streams and the runtime's int8 layers; compress/sensitivity.py from a whole fake-quant reference model of
    the written artifact, one unit enabled at a time."""
    import json

    from calibration.data import build_calibration
    from compress.quantize import QuantizeOptions, run_quantize
    from compress.sensitivity import score_units
    from runtime.binding import binder_for
    from runtime.model import Llama

    hf, tok = stories_hf
    opts = QuantizeOptions(calib_samples=4, calib_seq_len=64, disable_level=0, sens_samples=2)
    run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", opts, progress=False,
                 log=lambda *a: None)
    streamed = json.loads((tmp_path / "a" / "artifact.json").read_text())["fallback"]["scores"]
    calib = build_calibration(data_dir / "ceval", tok, 4, 64, 0)
    b = binder_for(tmp_path / "a", reference=True)
    model = Llama(b.source.config, b).eval()
    whole = score_units(model, calib.samples[:2], "layer", progress=False)
    assert sorted(streamed) == sorted(whole) and len(whole) == 5
    for u in whole:
        assert abs(streamed[u] - whole[u]) <= 0.03 * whole[u] + 1e-7, (u, streamed[u], whole[u])
    rank = lambda s: sorted(s, key=lambda u: -s[u])  # noqa: E731
    assert rank(streamed)[:2] == rank(whole)[:2]
