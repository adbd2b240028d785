"""Write a SentencePiece tokenizer into an HF directory by copying its files, without transformers.

Meta's LLaMA checkpoints ship tokenizer.model only; converting it to tokenizer.json needs transformers'
converters and their optional dependencies, which have failed a compression run at its very last step.
transformers (LlamaTokenizer / AutoTokenizer) and this project's runtime both read tokenizer.model directly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

SP_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def _piece(sp, i: int) -> str | None:
    return sp.id_to_piece(i) if i is not None and 0 <= i < sp.vocab_size() else None


def write_sentencepiece_files(tok, out_dir: Path) -> list[str]:
    """Copy tokenizer.model (+ the source's side files, or minimal ones); returns the names written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tok.sp_path, out_dir / "tokenizer.model")
    written = ["tokenizer.model"]
    src_dir = Path(tok.sp_dir) if getattr(tok, "sp_dir", None) else None
    for name in SP_SIDE_FILES:
        if src_dir is not None and (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, out_dir / name)
            written.append(name)
    sp = tok.sp
    specials = {k: v for k, v in (("bos_token", _piece(sp, sp.bos_id())), ("eos_token", _piece(sp, sp.eos_id())),
                                  ("unk_token", _piece(sp, sp.unk_id()))) if v is not None}
    if "tokenizer_config.json" not in written:
        # legacy=True: the SentencePiece behaviour LLaMA-2 was trained with; BOS as this tokenizer adds it
        cfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": tok.bos_id is not None,
               "add_eos_token": False, "legacy": True, "model_max_length": 1_000_000_000, **specials}
        (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        written.append("tokenizer_config.json")
    if "special_tokens_map.json" not in written:
        (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, sort_keys=True) + "\n")
        written.append("special_tokens_map.json")
    return written
