"""The streamed safetensors writer gives the bytes of safetensors' own save_file (via save_tensors)."""
import torch
from safetensors import safe_open

from runtime.format import save_tensors
from runtime.format.streamed import PendingTensor, save_tensors_streamed


def _pending(ts):
    return [PendingTensor(n, t.dtype, tuple(t.shape), (lambda t=t: t)) for n, t in ts.items()]


def test_streamed_writer_matches_save_file_byte_for_byte(tmp_path):
    g = torch.Generator().manual_seed(0)
    ts = {"model.layers.1.mlp.down_proj.quant_weight": torch.randint(-127, 128, (7, 5), generator=g).to(torch.int8),
          "model.layers.0.mlp.down_proj.quant_weight": torch.randint(-127, 128, (3, 5), generator=g).to(torch.int8),
          "b.scale": torch.rand(9, generator=g), "a.block": torch.tensor([64], dtype=torch.int32),
          "z.half": torch.rand(3, 2, generator=g).to(torch.bfloat16), "c.u8": torch.arange(5, dtype=torch.uint8),
          "d.f16": torch.rand(4, generator=g).half(), "e.empty": torch.zeros(0, 3), "f.scalar1": torch.ones(1)}
    for n in range(1, len(ts) + 1):  # every prefix: header padding takes each value mod 8
        sub = dict(list(ts.items())[:n])
        save_tensors(tmp_path / "lib.safetensors", sub)
        save_tensors_streamed(tmp_path / "ours.safetensors", _pending(sub))
        assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "lib.safetensors").read_bytes(), n
    with safe_open(str(tmp_path / "ours.safetensors"), framework="pt") as f:
        for k, v in ts.items():
            assert torch.equal(f.get_tensor(k), v)


def test_streamed_writer_refuses_a_tensor_that_is_not_what_it_announced(tmp_path):
    import pytest

    bad = PendingTensor("x", torch.float32, (2,), lambda: torch.zeros(3))
    with pytest.raises(ValueError, match="announced"):
        save_tensors_streamed(tmp_path / "x.safetensors", [bad])
