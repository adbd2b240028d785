"""`run_mmlu`: score MMLU k-shot with an Engine, resumable, and write the result files."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_write_text
from ..engine import Engine
from ..errors import UserError
from .cache import Journal, Row, read_cache, write_final
from .data import LETTERS, default_data_dir, load_mapping, read_csv, select_subjects, split_path
from .prompt import FORMATS, letter_token_ids
from .scoring import PlainScorer, PrefixScorer, encode_items
from .summary import classes_summary, subject_summary

RESULT_DIR = "test_result"


def _settings(shots: int, fmt: str, max_len: int, model_desc: str | None, fingerprint: dict | None,
              data_dir: Path) -> dict:
    # what makes two runs' rows comparable; batch, limit and subjects may change between resumes.
    # With a fingerprint (checksums of the weights, dtype, device, tokenizer) the description is only
    # informative: a moved artifact still resumes, another one with the same name does not.
    s = {"protocol": fmt, "shots": shots, "max_seq_len": max_len, "model": model_desc}
    if fingerprint is not None:
        s["fingerprint"] = fingerprint
        s["data_sha256"] = data_checksum(data_dir)
    return s


def data_checksum(data_dir: Path) -> str:
    """sha256 over every dev/ and test/ CSV: other questions give other scores."""
    import hashlib

    from ..fingerprint import sha256_file

    h = hashlib.sha256()
    for f in sorted([*data_dir.glob("dev/*.csv"), *data_dir.glob("test/*.csv")]):
        h.update(f"{f.relative_to(data_dir).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _check_settings(out_dir: Path, settings: dict) -> None:
    p = out_dir / "run.json"
    if p.exists():
        old = json.loads(p.read_text())
        keys = [k for k in settings if not ("fingerprint" in settings and k == "model")]
        diff = {k: (old.get(k), settings[k]) for k in keys if old.get(k) != settings[k]}
        if diff:
            why = "; ".join(_why(k, a, b) for k, (a, b) in diff.items())
            raise UserError(f"{out_dir} holds an MMLU run of other settings ({why}): its rows would mix with "
                            "this run's. Resume with the same model and options, pass --restart to start over "
                            "in this directory, or choose another --out")
    atomic_write_text(p, json.dumps(settings, indent=1) + "\n")


def _why(key: str, was, now) -> str:
    if key == "fingerprint" and isinstance(was, dict) and isinstance(now, dict):
        parts = [f"{k} was {was.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(was) | set(now))
                 if was.get(k) != now.get(k)]
        return "model " + ", ".join(parts)
    if key == "fingerprint" and was is None:
        return "the earlier run recorded no checksum of its model (an older version), so it cannot be matched"
    return f"{key} was {was!r}, now {now!r}"


def clear_run(out_dir: Path) -> None:
    """--restart: remove only the files an MMLU run writes (never a user's other files in --out)."""
    for rel in ("run.json", "timing.json", *(f"{RESULT_DIR}/{f}" for f in
                ("cache.csv", "summary_subject_acc.json", "summary_classes_acc.json"))):
        (out_dir / rel).unlink(missing_ok=True)


def run_mmlu(engine: Engine, tokenizer, data_dir: str | Path | None, out_dir: str | Path, shots: int = 5,
             batch: int = 1, subjects: list[str] | None = None, limit: int | None = None, fmt: str = "hendrycks",
             progress: bool = True, prefix_cache: bool = True, model_desc: str | None = None,
             on_batch: Callable[[int], None] | None = None, fingerprint: dict | None = None,
             restart: bool = False) -> dict:
    """Evaluate MMLU and write `out_dir/test_result/{cache.csv, summary_subject_acc.json,
    summary_classes_acc.json}`; resume from an existing cache.csv. Returns the classes summary
    plus `subjects` and timing. `on_batch(n_new)` is called after each batch is saved (tests use it)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if shots < 0 or batch < 1 or (limit is not None and limit < 1):
        raise UserError("--shots must be >= 0, --batch >= 1 and --limit >= 1")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    out_dir = Path(out_dir)
    subs = select_subjects(data_dir, subjects)
    mapping = load_mapping(data_dir)
    missing = [s for s in subs if s not in mapping]
    if missing:
        raise UserError(f"{data_dir / 'mapping.json'} has no category for {', '.join(missing)}: add them")
    out_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        clear_run(out_dir)
    _check_settings(out_dir, _settings(shots, fmt, engine.max_seq_len, model_desc, fingerprint, data_dir))

    dev = {s: read_csv(split_path(data_dir, "dev", s), s) for s in subs}
    tests = {s: read_csv(split_path(data_dir, "test", s), s)[:limit] for s in subs}
    letter_ids = letter_token_ids(tokenizer, fmt)
    cache_path = out_dir / RESULT_DIR / "cache.csv"
    done = read_cache(cache_path)
    journal = Journal(cache_path)
    wanted = [(q.subject, q.index) for s in subs for q in tests[s]]
    todo_n = sum(1 for k in wanted if k not in done)
    scorer = PrefixScorer(engine, letter_ids, tokenizer, dev, fmt) if prefix_cache else PlainScorer(engine, letter_ids)

    from tqdm import tqdm

    bar = tqdm(total=len(wanted), initial=len(wanted) - todo_n, disable=not progress, unit="q", desc="MMLU")
    right = sum(done[k].correct for k in wanted if k in done)
    seen, new = len(wanted) - todo_n, 0
    t0 = time.perf_counter()
    for s in subs:
        pending = [q for q in tests[s] if (s, q.index) not in done]
        if not pending:
            continue
        bar.set_description(s[:24])
        # tokenize the whole subject so batches are the same as in an uninterrupted run
        items = encode_items(tokenizer, tests[s], dev[s], shots, fmt, engine.max_seq_len - engine.P)
        for ctx, bs in scorer.groups(items, batch):
            for b in bs:
                if all((it.q.subject, it.q.index) in done for it in b):
                    continue
                letters = scorer.score(ctx, b)
                probs = torch.softmax(letters.double(), -1)
                rows = []
                for it, lg, pr in zip(b, letters.tolist(), probs.tolist()):
                    key = (it.q.subject, it.q.index)
                    if key in done:
                        continue
                    pred = LETTERS[max(range(4), key=lambda j: lg[j])]  # first of equal maxima
                    rows.append(Row(it.q.subject, it.q.index, it.q.answer, pred, tuple(pr), it.shots))
                journal.append(rows)
                for r in rows:
                    done[(r.subject, r.index)] = r
                    right += r.correct
                seen += len(rows)
                new += len(rows)
                bar.update(len(rows))
                bar.set_postfix(acc=f"{right / max(seen, 1):.4f}")
                if on_batch is not None:
                    on_batch(new)
    bar.close()
    seconds = time.perf_counter() - t0

    rows = [done[k] for k in wanted]
    # cache.csv keeps every question this directory has scored (a run over a few subjects does not
    # drop the others'); the summaries cover this run's selection
    write_final(cache_path, [done[k] for k in sorted(done)])
    by_subject = subject_summary(rows, mapping)
    classes = classes_summary(by_subject)
    res = out_dir / RESULT_DIR
    atomic_write_text(res / "summary_subject_acc.json", json.dumps(by_subject, indent=1) + "\n")
    atomic_write_text(res / "summary_classes_acc.json", json.dumps(classes, indent=1) + "\n")
    timing = {"scored": new, "seconds": round(seconds, 2),
              "questions_per_s": round(new / seconds, 3) if new and seconds > 0 else None}
    # timing lives apart from test_result/, whose files are the same for a straight and a resumed run
    atomic_write_text(out_dir / "timing.json", json.dumps(timing, indent=1) + "\n")
    return {**classes, "subjects": by_subject, "timing": timing}
