"""The perplexity text recipes: "hf" reproduces Hugging Face's wikitext-2-raw-v1 test split joined with "\\n\\n"
(checked against the dataset's row count and the published float SmolLM2 figure), "raw" is the file itself."""
import pytest

from runtime.errors import UserError
from runtime.perplexity import hf_wikitext_rows, load_ids, recipe_text


def test_hf_rows_of_wiki_test_raw(data_dir):
    raw = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes().decode("utf-8")
    rows = hf_wikitext_rows(raw)
    assert len(rows) == 4358  # the test split of wikitext-2-raw-v1 on the Hugging Face hub
    assert rows[:3] == ["", " = Robert Boulter = \n", ""]  # its first rows; blank lines become ""
    assert all(r == "" or (r.endswith("\n") and r.strip()) for r in rows)
    assert "".join(r if r else "\n" for r in rows).replace(" \n", "\n") == raw.replace(" \n", "\n")
    joined = recipe_text(raw, "hf")
    assert joined.startswith("\n\n = Robert Boulter = \n\n\n\n") and len(joined) > len(raw)
    assert recipe_text(raw, "raw") == raw
    # the builder opens the file in text mode: CRLF line ends give the same rows
    assert hf_wikitext_rows(raw[:5000].replace("\n", "\r\n")) == hf_wikitext_rows(raw[:5000])
    with pytest.raises(UserError, match="text-recipe"):
        recipe_text(raw, "wiki")


def test_hf_recipe_reproduces_the_published_smollm2_figure(smollm2_hf_dir):
    """llm-compressor's float SmolLM2-135M-Instruct: 35.88 on the first 20 windows of 512 (stride 512)."""
    from runtime.loaders import open_source
    from runtime.loading import build_model, tokenizer_for
    from runtime.perplexity import perplexity, token_windows
    from runtime.presets import resolve_model

    src = open_source(smollm2_hf_dir)
    tok = tokenizer_for(resolve_model("smollm2-135m"), src)
    hf_ids, raw_ids = load_ids(tok, None, "hf"), load_ids(tok, None, "raw")
    assert hf_ids != raw_ids
    r = perplexity(build_model(src), token_windows(hf_ids, 512, 512, 20))
    assert r.windows == 20 and r.tokens == 20 * 511
    assert r.ppl == pytest.approx(35.88, abs=0.01)
