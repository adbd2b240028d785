"""MMLU data reading and the prompt protocol, checked against hand-built text from the raw CSV rows."""
import csv

import pytest

from runtime.errors import UserError
from runtime.mmlu.data import list_subjects, load_mapping, read_csv, split_path
from runtime.mmlu.prompt import full_prompt, letter_token_ids


@pytest.fixture(scope="module")
def mmlu(data_dir):
    return data_dir / "mmlu"


def raw_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_reader_handles_quotes_newlines_and_mixed_endings(tmp_path):
    p = tmp_path / "x_test.csv"
    # row 1 LF, row 2 CRLF with a quoted field spanning lines and a quoted comma
    p.write_bytes(b'"Q1?",a,b,c,d,A\n"Line one\nline two, with comma",a2,"b,2",c2,d2,D\r\n')
    qs = read_csv(p, "x")
    assert [q.question for q in qs] == ["Q1?", "Line one\nline two, with comma"]
    assert qs[1].choices == ("a2", "b,2", "c2", "d2") and qs[1].answer == "D" and qs[1].index == 1


@pytest.mark.parametrize("body", [b"q,a,b,c,d\n", b"q,a,b,c,d,E\n"])
def test_reader_rejects_bad_rows(tmp_path, body):
    p = tmp_path / "y_test.csv"
    p.write_bytes(body)
    with pytest.raises(UserError, match="row 1"):
        read_csv(p, "y")


def test_real_data_counts(mmlu):
    subs = list_subjects(mmlu)
    assert len(subs) == 57 and set(subs) == set(load_mapping(mmlu))
    assert sum(len(read_csv(split_path(mmlu, "test", s), s)) for s in subs) == 14042
    assert all(len(read_csv(split_path(mmlu, "dev", s), s)) == 5 for s in subs)


def test_five_shot_prompt_exact(mmlu):
    """One full 5-shot prompt, character for character, built by hand from the CSV rows."""
    subject = "high_school_us_history"  # long, multi-line questions
    dev_rows = raw_rows(mmlu / "dev" / f"{subject}_dev.csv")
    test_rows = raw_rows(mmlu / "test" / f"{subject}_test.csv")
    expected = "The following are multiple choice questions (with answers) about  high school us history.\n\n"
    for r in dev_rows[:5]:
        expected += r[0] + "\nA. " + r[1] + "\nB. " + r[2] + "\nC. " + r[3] + "\nD. " + r[4] + "\nAnswer: " + r[5] + "\n\n"
    t = test_rows[7]
    expected += t[0] + "\nA. " + t[1] + "\nB. " + t[2] + "\nC. " + t[3] + "\nD. " + t[4] + "\nAnswer:"

    dev = read_csv(mmlu / "dev" / f"{subject}_dev.csv", subject)
    test = read_csv(mmlu / "test" / f"{subject}_test.csv", subject)
    got = full_prompt(test[7], dev, 5)
    assert got == expected
    assert "about  high school us history.\n\n" in got and got.count("\nAnswer: ") == 5


def test_lm_eval_variant_header_and_strip(mmlu):
    subject = "abstract_algebra"
    dev = read_csv(mmlu / "dev" / f"{subject}_dev.csv", subject)
    test = read_csv(mmlu / "test" / f"{subject}_test.csv", subject)
    got = full_prompt(test[0], dev, 0, "lm-eval")
    r = raw_rows(mmlu / "test" / f"{subject}_test.csv")[0]
    assert got == ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                   + r[0].strip() + "\nA. " + r[1] + "\nB. " + r[2] + "\nC. " + r[3] + "\nD. " + r[4] + "\nAnswer:")


def test_letter_ids_smollm2(smollm2_hf_dir):
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(smollm2_hf_dir)
    h, l = letter_token_ids(tok), letter_token_ids(tok, "lm-eval")
    assert [tok.decode([i]) for i in h] == ["A", "B", "C", "D"]
    assert [tok.decode([i]) for i in l] == [" A", " B", " C", " D"]
    # the lm-eval ids are the ones that follow "Answer:" in a shot
    enc = tok.encode("Answer: C", add_special=False)
    assert enc[-1] == l[2]


def test_letter_ids_llama2_sentencepiece(data_dir):
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(data_dir / "llama2-tokenizer" / "tokenizer.model")
    h = letter_token_ids(tok)
    # hendrycks: tokenizer("A").input_ids[-1] is "▁A" after BOS
    assert h == [tok.encode(x)[-1] for x in "ABCD"] and tok.encode("A")[0] == tok.bos_id
    assert len(set(h)) == 4
