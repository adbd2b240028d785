"""`compress cut --tp N SRC --out DIR`: one loadable unit per tensor-parallel rank plus a manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("cut")
    @user_errors
    def cut_(
        src: str = typer.Argument(..., help="model (preset, HF dir, .gguf, llama2.c .bin) or an artifact directory"),
        tp: int = typer.Option(..., "--tp", help="tensor-parallel size N: must divide the attention heads and FFN width"),
        out: Path = typer.Option(..., help="output directory: cut.json + rank_0/ .. rank_{N-1}/"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer for checkpoints that carry none (llama2.c)"),
        force: bool = typer.Option(False, help="replace an existing --out"),
    ) -> None:
        """Cut a float model or a quantized artifact for `torchrun --nproc-per-node N -m runtime.cli run`."""
        from compress.cut import cut

        m = cut(src, tp, out, tokenizer=tokenizer, overwrite=force, progress=True)
        p = m["plan"]
        kv = "replicated across ranks" if p["kv_replicated"] else "split"
        typer.echo(f"wrote {out}: {m['kind']} model cut for {tp} ranks; {p['heads_per_rank']} query heads, "
                   f"KV heads {p['kv_heads_per_rank']} ({kv}), FFN {p['ffn_per_rank']} and vocabulary split per rank")
