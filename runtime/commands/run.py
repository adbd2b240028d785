"""`runtime run`: generate from prompts with a float model or a quantized artifact."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from . import apply_threads, user_errors

# torch, the engine and the loaders are imported inside the functions: `runtime --help` must not pay the
# seconds torch takes to import


def load_for_run(model: Optional[str], weights: Optional[str], tokenizer: Optional[str], quant: Optional[Path],
                 dtype: str, device: str, max_seq_len: int, batch: int = 1, skip_memory_check: bool = False):
    """(engine, tokenizer, description): runtime.loading.load_for_run (ppl, eval-mmlu and perf import it here)."""
    from ..loading import load_for_run as load

    return load(model, weights, tokenizer, quant, dtype, device, max_seq_len, batch=batch,
                skip_memory_check=skip_memory_check)


def chat_prompt(tok, text: str) -> str:
    """Wrap a user message in the tokenizer's own chat template (instruct models such as SmolLM2)."""
    hf = getattr(tok, "hf", None)
    if hf is None or not getattr(hf, "chat_template", None):
        raise UserError("--chat needs a tokenizer with a chat template (an HF tokenizer or an instruct GGUF)")
    return hf.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)


def encode_batch(tok, prompts: list[str], chat: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded INT64 input_ids and a 0/1 attention_mask."""
    import torch

    enc = [tok.encode(chat_prompt(tok, p), add_special=False) if chat else tok.encode(p) for p in prompts]
    if any(len(e) == 0 for e in enc):
        raise UserError("a prompt encodes to no tokens (empty prompt and no BOS): give some text")
    S = max(len(e) for e in enc)
    ids = torch.zeros(len(enc), S, dtype=torch.int64)
    mask = torch.zeros(len(enc), S, dtype=torch.int64)
    for i, e in enumerate(enc):
        ids[i, S - len(e):] = torch.tensor(e)
        mask[i, S - len(e):] = 1
    return ids, mask


def register(app: typer.Typer) -> None:
    @app.command("run")
    @user_errors
    def run(
        model: Optional[str] = typer.Option(None, help="preset (7b, 13b, smollm2-135m, stories260k) or a path; default smollm2-135m"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer.model / HF dir / .gguf, if the model has none"),
        quant: Optional[Path] = typer.Option(None, help="run a compressed artifact directory (from compress quantize/sparse/pack)"),
        prompt: list[str] = typer.Option(["Once upon a time"], help="repeat for a batch"),
        max_new_tokens: int = typer.Option(32, help="tokens to generate per prompt"),
        max_seq_len: int = typer.Option(2048, help="KV-cache length: prompt + new tokens must fit"),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16"),
        device: str = typer.Option("cpu", help="cpu, cuda or npu"),
        temperature: float = typer.Option(0.0, help="0 = greedy"),
        top_k: int = typer.Option(0),
        top_p: float = typer.Option(1.0),
        seed: int = typer.Option(0),
        chat: bool = typer.Option(False, help="wrap each prompt in the tokenizer's chat template"),
        threads: Optional[int] = typer.Option(None, help="CPU threads (default: all cores)"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="write output_ids, texts and latencies here"),
        bind_cpu: bool = typer.Option(False, "--bind-cpu", envvar="BIND_CPU",
                                      help="under torchrun: pin each rank to its own cores, one thread per core"),
        performance: bool = typer.Option(False, "--performance", help="the guide's performance mode instead: the "
                                         "latency matrix, with `runtime perf`'s options (see runtime perf --help)"),
        skip_memory_check: bool = typer.Option(False, help="load even where the RAM estimate exceeds MemAvailable"),
        precision: bool = typer.Option(False, "--precision", help="the guide's precision mode instead: MMLU "
                                       "5-shot, with `runtime eval-mmlu`'s options (see runtime eval-mmlu --help)"),
    ) -> None:
        """Generate completions and print first-token and per-token latency.

        `runtime run --performance ...` is `runtime perf ...` and `runtime run --precision ...` is
        `runtime eval-mmlu ...` (the deployment guide's spelling).
        """
        if performance or precision:  # the console entry point maps these before typer sees them
            raise UserError("--performance / --precision select another mode: run them as `runtime perf ...` / "
                            "`runtime eval-mmlu ...` (the `runtime` command maps them for you)")
        from ..atomic import atomic_write_text, check_out_file
        from ..engine import check_generate_args
        from ..parallel.dist import is_main_process, pin_cpu
        from ..sampling import SamplingParams

        if json_out is not None:  # before loading the model and generating, not after
            check_out_file(json_out, "--json")
        check_generate_args(max_new_tokens, SamplingParams(temperature, top_k, top_p, seed))
        if bind_cpu:
            pin_cpu()
        apply_threads(threads)
        engine, tok, desc = load_for_run(model, weights, tokenizer, quant, dtype, device, max_seq_len,
                                         batch=len(prompt), skip_memory_check=skip_memory_check)
        ids, mask = encode_batch(tok, prompt, chat)
        sp = SamplingParams(temperature, top_k, top_p, seed)
        engine.generate(ids[:, :1], None, 1, sp)  # warm-up: first-call allocations out of the timing
        g = engine.generate(ids, mask, max_new_tokens, sp)
        texts = [tok.decode(g.output_ids[i, : g.lengths[i]].tolist()) for i in range(len(prompt))]
        if not is_main_process():  # tensor parallel: only rank 0 prints and writes files
            return
        typer.echo(f"model: {desc}")
        from ..kernels.paths import describe_decode_paths

        typer.echo(f"decode path: {describe_decode_paths(engine.model)}")
        for p, t in zip(prompt, texts):
            typer.echo(f"--- {p!r}\n{t}" if chat else f"--- {p!r}\n{p}{t}")
        typer.echo(f"first token: {g.first_token_ms:.1f} ms   next token: {g.next_token_ms:.2f} ms "
                   f"({1e3 / g.next_token_ms if g.next_token_ms == g.next_token_ms else float('nan'):.1f} tokens/s per sequence)")
        if json_out is not None:
            atomic_write_text(json_out, json.dumps({"output_ids": g.output_ids.tolist(), "texts": texts,
                                                    "first_token_ms": g.first_token_ms,
                                                    "next_token_ms": g.next_token_ms}, indent=1))
