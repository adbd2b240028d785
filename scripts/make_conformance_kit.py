"""Build docs/conformance/: two small stories260K reference artifacts, their input ids and expected logits,
and quantizer vectors that pin the arithmetic of docs/ARTIFACT.md bit for bit.

    PYTHONPATH=. python scripts/make_conformance_kit.py [--out docs/conformance]

The artifacts are made by `compress quantize` (the commands are recorded in the kit's README); the
expected logits are the fake-quant reference (runtime/quant/linear.py FakeQuantLinear: dequantized
weights, spec codes, float32), the portable float computation every conforming reader approximates.
Re-running gives the same tensors on the same CPU and torch; on another CPU the calibration may pick
other scales, so the kit is committed, not rebuilt by the tests.

Files of an artifact that are byte copies of the shared data (anti_weight/tokenizer.model is stories260K's
tok512.model) are removed and named in shared_files.json instead: the repository references ../shared, it
never copies it. docs/conformance/materialize.py puts them back into a working copy. The manifests still
list them, with their sha256, which materialize.py checks.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.presets import shared_dir  # noqa: E402
from runtime.quant import qmath  # noqa: E402
from runtime.quant.artifact import read_manifest, sha256_file  # noqa: E402

ARTIFACTS = {
    # every reader: static per-tensor, no online rotation, one float-fallback layer
    "static": ["--hadamard-block", "0", "--float-layers", "2"],
    # readers of our format: per-token activations and the online Hadamard at down_proj (block 4)
    "dynamic-hadamard": ["--act-method", "dynamic", "--disable-level", "L0"],
}
COMMON = ["--model", "stories260k", "--calib-samples", "8", "--calib-seq-len", "128", "--seed", "0"]
TEXTS = ["Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog.",
         "One day, a big bear came to the forest. The bear was hungry and sad, so the little bird sang a song."]
SEQ = 32


def quantize(out: Path, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "compress.cli", "quantize", *COMMON, *extra, "--out", str(out), "--force"]
    subprocess.run(cmd, check=True, cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def input_ids(art: Path) -> torch.Tensor:
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(art / "anti_weight")
    rows = [tok.encode(t)[:SEQ] for t in TEXTS]
    assert all(len(r) == SEQ for r in rows), "texts too short for SEQ tokens"
    return torch.tensor(rows, dtype=torch.int64)


def expected_logits(art: Path, ids: torch.Tensor) -> torch.Tensor:
    from runtime.engine import Engine
    from runtime.quant_loading import load_artifact_model

    model, _, _ = load_artifact_model(art, torch.float32, "cpu", reference=True)
    with torch.no_grad():
        return Engine(model, 128, 0, [2]).logits(ids, None, False).float().contiguous()


def strip_shared_copies(art: Path, shared: dict[str, str]) -> dict[str, str]:
    """Delete the files of `art` whose sha256 is that of a shared-data file; {file in art: shared path}."""
    removed = {}
    for rel in sorted(read_manifest(art)["files"]):
        ref = shared.get(sha256_file(art / rel))
        if ref is not None:
            (art / rel).unlink()
            removed[rel] = ref
    return removed


def shared_hashes(root: Path) -> dict[str, str]:
    """sha256 -> path relative to `root` of every file under root/data."""
    data = root / "data"
    if not data.is_dir():
        sys.exit(f"shared data not found at {data}: set LLAMA_COMPRESS_SHARED to the shared folder")
    return {sha256_file(p): p.relative_to(root).as_posix() for p in sorted(data.rglob("*")) if p.is_file()}


def _tie_and_division_cases(scale: float) -> list[float]:
    """float32 inputs at the codes' rounding boundaries: exact .5 ties of x / s (half-to-even decides) and
    values where x / s and x * (1 / s) round to different codes (division decides)."""
    s = torch.tensor(scale, dtype=torch.float32)
    inv = 1.0 / s
    out: list[float] = []
    for k in range(-140, 140):
        centre = torch.tensor((k + 0.5) * float(s), dtype=torch.float32)
        for d in range(-3, 4):  # a few ulps around the boundary
            x = centre
            step = torch.tensor(float("inf") if d > 0 else float("-inf"), dtype=torch.float32)
            for _ in range(abs(d)):
                x = torch.nextafter(x, step)
            q_div = torch.round(x / s)
            q_mul = torch.round(x * inv)
            if float(x / s) % 1 == 0.5 or q_div != q_mul:
                out.append(float(x))
    return out


def quant_vectors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t: dict[str, torch.Tensor] = {}
    for name, (lo, hi) in {"a": (-3.1, 5.3), "b": (-0.37, 0.21)}.items():
        sc, off = qmath.act_params(lo, hi)
        special = _tie_and_division_cases(sc)
        rand = (torch.rand(2048, generator=g) * (hi - lo) * 1.2 + lo * 1.1).tolist()
        x = torch.tensor(special + rand + [hi * 10, lo * 10, 0.0, -0.0], dtype=torch.float32)
        t[f"static_{name}.x"] = x
        t[f"static_{name}.input_scale"] = torch.tensor([sc], dtype=torch.float32)
        t[f"static_{name}.input_offset"] = torch.tensor([off], dtype=torch.float32)
        t[f"static_{name}.codes"] = qmath.quantize_act_static(x, sc, off)
    rows = torch.randn(16, 96, generator=g) * torch.logspace(-2, 1, 16)[:, None]
    rows[3, 5] = 40.0  # one outlier channel: the row's scale follows it
    rows[7] = 0.0  # an all-zero row: the 1e-8 floor of the scale
    s = qmath.dynamic_scales(rows)
    t["dynamic.x"] = rows.float().contiguous()
    t["dynamic.scale"] = s.float().contiguous()
    t["dynamic.codes"] = qmath.act_codes_dynamic(rows, s).to(torch.int8)
    had = torch.randn(4, 64, generator=g)
    t["hadamard.block"] = torch.tensor([16], dtype=torch.int32)
    t["hadamard.x"] = had
    t["hadamard.y"] = qmath.hadamard(had, 16).float().contiguous()
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "conformance")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    shared = shared_hashes(shared_dir())
    taken: dict[str, dict[str, str]] = {}
    for name, extra in ARTIFACTS.items():
        art = a.out / name / "artifact"
        quantize(art, extra)
        ids = input_ids(art)  # with the complete artifact (its tokenizer.model), before stripping
        save_file({"input_ids": ids, "logits": expected_logits(art, ids)}, str(a.out / name / "expected.safetensors"),
                  metadata={"format": "pt"})
        taken[f"{name}/artifact"] = strip_shared_copies(art, shared)
    (a.out / "shared_files.json").write_text(json.dumps(taken, indent=1, sort_keys=True) + "\n")
    save_file(quant_vectors(), str(a.out / "quant_vectors.safetensors"), metadata={"format": "pt"})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
