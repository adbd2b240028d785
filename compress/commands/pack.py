"""`compress pack ARTIFACT [--out DIR]` and `compress unpack PACKED [--out DIR]`: lossless packed sparse int8."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("pack")
    @user_errors
    def pack(
        artifact: Path = typer.Argument(..., help="artifact directory (compress quantize / sparse / cut)"),
        out: Optional[Path] = typer.Option(None, help="packed artifact directory (default: ARTIFACT-packed)"),
        codec: str = typer.Option("none", help="none (the runtime reads it in place) or lzma (smaller file, "
                                               "decompressed to the packed form at load)"),
        force: bool = typer.Option(False, help="replace an existing --out"),
    ) -> None:
        """Store int8 weights as bitmask + non-zero values (+ row index): lossless, per tensor-parallel rank."""
        from compress.pack import pack_artifact
        from runtime.atomic import check_out

        out = out or artifact.with_name(artifact.name + "-packed")
        check_out(out, force)
        for i, r in enumerate(pack_artifact(artifact, out, codec, overwrite=force)):
            typer.echo(f"rank {i}: int8 {r['dense_int8_bytes'] / 2**20:.2f} MiB -> packed {r['packed_bytes'] / 2**20:.2f}"
                       f" MiB (ratio {r['ratio']:.3f}), file {r['file']} {r['file_bytes'] / 2**20:.2f} MiB "
                       f"(ratio {r['file_ratio']:.3f})")
            if min(r["ratio"], r["file_ratio"]) >= 1:
                typer.secho(f"warning: rank {i}'s packed weights are larger than dense int8 (ratio {r['ratio']:.3f}): "
                            "the artifact is not sparse enough for the bitmask to pay (the mask costs 1/8 byte per "
                            "weight, so it needs well over 1/8 of the weights zero); keep the unpacked artifact, "
                            "or prune it first with compress sparse",
                            fg="yellow", err=True)
        typer.echo(f"wrote {out}; run it with: runtime run --quant {out}")

    @app.command("unpack")
    @user_errors
    def unpack(
        packed: Path = typer.Argument(..., help="packed artifact directory (compress pack)"),
        out: Optional[Path] = typer.Option(None, help="restored artifact directory (default: PACKED-unpacked)"),
        force: bool = typer.Option(False, help="replace an existing --out"),
    ) -> None:
        """Restore the exact unpacked artifact (same quant_weight tensors and artifact.json, byte for byte)."""
        from compress.pack import unpack_artifact

        out = out or packed.with_name(packed.name + "-unpacked")
        unpack_artifact(packed, out, overwrite=force)
        typer.echo(f"wrote {out}")
