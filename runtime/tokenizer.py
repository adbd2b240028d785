"""Tokenizers: SentencePiece `tokenizer.model`, HF `tokenizer.json` directories, and GGUF-embedded vocabs.

BOS follows the model's own tokenizer config (LLaMA-2 adds `<s>`, SmolLM2 adds nothing).
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError


class Tokenizer:
    """A thin common face over sentencepiece and transformers' tokenizers."""

    def __init__(self, encode_fn, decode_fn, vocab_size: int, bos_id: int | None, eos_id: int | None,
                 hf=None, sp=None):
        self._encode, self._decode = encode_fn, decode_fn
        self.vocab_size, self.bos_id, self.eos_id = vocab_size, bos_id, eos_id
        self.hf, self.sp = hf, sp

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        return self._encode(text, add_special)

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self._decode(list(ids), skip_special)

    def save(self, out_dir: Path) -> None:
        """Write the tokenizer files into an HF model directory.

        SentencePiece vocabularies are copied as they are (tokenizer.model, plus the source's
        tokenizer_config.json / special_tokens_map.json, or minimal ones written here): no
        transformers converter runs, so a missing optional dependency (protobuf, tiktoken) cannot
        fail a write at the end of a long compression run. transformers reads tokenizer.model itself.
        """
        if self.hf is not None:
            self.hf.save_pretrained(str(out_dir))
            return
        from .sp_files import write_sentencepiece_files

        write_sentencepiece_files(self, Path(out_dir))


def _from_sentencepiece(path: Path, add_bos: bool = True) -> Tokenizer:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))

    def enc(text: str, special: bool) -> list[int]:
        ids = sp.encode(text)
        return ([sp.bos_id()] + ids) if special and add_bos and sp.bos_id() >= 0 else ids

    def dec(ids: list[int], skip: bool) -> str:
        return sp.decode(ids)

    t = Tokenizer(enc, dec, sp.vocab_size(), sp.bos_id() if sp.bos_id() >= 0 and add_bos else None,
                  sp.eos_id() if sp.eos_id() >= 0 else None, sp=sp)
    t.sp_path = str(path)
    t.sp_dir = None
    return t


def _from_hf(tok) -> Tokenizer:
    def enc(text: str, special: bool) -> list[int]:
        return tok(text, add_special_tokens=special)["input_ids"]

    def dec(ids: list[int], skip: bool) -> str:
        return tok.decode(ids, skip_special_tokens=skip)

    return Tokenizer(enc, dec, len(tok), tok.bos_token_id if getattr(tok, "add_bos_token", True) else tok.bos_token_id,
                     tok.eos_token_id, hf=tok)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """From a `tokenizer.model` file, an HF directory, or a `.gguf` file (its embedded vocab)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"tokenizer path {p} does not exist: pass a tokenizer.model, an HF directory or a .gguf file")
    if p.is_file() and p.suffix == ".model":
        return _from_sentencepiece(p)
    import transformers

    transformers.logging.set_verbosity_error()
    from transformers import AutoTokenizer

    if p.is_file() and p.suffix == ".gguf":
        return _from_hf(AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name))
    if p.is_dir():
        # SentencePiece itself is the reference for SPM vocabularies: transformers' converted
        # tokenizer.json differs on whitespace-only edge cases, so prefer tokenizer.model when shipped.
        if (p / "tokenizer.model").exists():
            t = _from_sentencepiece(p / "tokenizer.model")
            cfg = p / "tokenizer_config.json"
            if cfg.exists() and json.loads(cfg.read_text()).get("add_bos_token") is False:
                t = _from_sentencepiece(p / "tokenizer.model", add_bos=False)
            t.sp_dir = str(p)  # its tokenizer_config.json / special_tokens_map.json travel with it on save
            return t
        if (p / "tokenizer.json").exists() or (p / "tokenizer_config.json").exists():
            return _from_hf(AutoTokenizer.from_pretrained(str(p)))
    raise UserError(f"no tokenizer found at {p}: expected tokenizer.model, tokenizer.json or a .gguf file; "
                    "pass one with --tokenizer")
