"""The prompt protocols.

`hendrycks` is hendrycks/test's `evaluate_hf.py` (the protocol behind the guide's float figures): the
header names the subject as " " + word for each `_`-separated word (so two spaces follow "about"),
each example is the question, "\\nA. ..." per choice and "\\nAnswer:", the k dev shots are followed by
" {answer}\\n\\n", and the letters are scored at the ids the tokenizer gives "A".."D" alone (last id).
When the prompt is longer than the model's limit, one shot fewer is used until it fits.

`lm-eval` is lm-evaluation-harness's variant: the subject words joined by single spaces after one
space, the question stripped, and the letters scored as " A".." D" (the token that follows "Answer:").
"""
from __future__ import annotations

from .data import LETTERS, Question

FORMATS = ("hendrycks", "lm-eval")


def format_subject(subject: str, fmt: str = "hendrycks") -> str:
    if fmt == "lm-eval":
        return subject.replace("_", " ")
    return "".join(" " + w for w in subject.split("_"))  # leading space: "about  abstract algebra"


def header(subject: str, fmt: str = "hendrycks") -> str:
    return f"The following are multiple choice questions (with answers) about {format_subject(subject, fmt)}.\n\n"


def format_example(q: Question, include_answer: bool, fmt: str = "hendrycks") -> str:
    text = q.question.strip() if fmt == "lm-eval" else q.question
    for letter, choice in zip(LETTERS, q.choices):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if include_answer:
        text += f" {q.answer}\n\n"
    return text


def few_shot_prefix(subject: str, dev: list[Question], k: int, fmt: str = "hendrycks") -> str:
    """Header and the first k dev examples with their answers: the part shared by a subject's questions."""
    return header(subject, fmt) + "".join(format_example(d, True, fmt) for d in dev[:k])


def full_prompt(q: Question, dev: list[Question], k: int, fmt: str = "hendrycks") -> str:
    return few_shot_prefix(q.subject, dev, k, fmt) + format_example(q, False, fmt)


def letter_token_ids(tokenizer, fmt: str = "hendrycks") -> list[int]:
    """The id scored for each letter: the last id of the letter encoded alone (" A" for lm-eval)."""
    if fmt == "lm-eval":
        return [tokenizer.encode(" " + letter, add_special=False)[-1] for letter in LETTERS]
    return [tokenizer.encode(letter)[-1] for letter in LETTERS]
