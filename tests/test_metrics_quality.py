import pytest

from seqpo.errors import MissingExtraError, InputFileError
from seqpo.metrics.quality import bleu_tokenizer, comet_scores, corpus_quality, sentence_chrf


def test_tokenizers_by_language():
    assert bleu_tokenizer("zh") == "zh"
    assert bleu_tokenizer("de") == "13a"
    assert bleu_tokenizer("ja") in ("ja-mecab", "char")


def test_chinese_bleu_uses_zh_tokenizer():
    # identical strings: 100; the zh tokenizer splits characters, so a one-character change keeps
    # partial credit where whitespace tokenization would see one unmatched "word"
    q = corpus_quality(["今天天气很好。"], ["今天天气很好。"], "zh")
    assert q["BLEU"] == pytest.approx(100.0)
    q2 = corpus_quality(["今天天气很坏。"], ["今天天气很好。"], "zh")
    assert 30 < q2["BLEU"] < 100
    assert "tok:zh" in q2["signatures"]["BLEU"]


def test_sentence_chrf_orders_hypotheses():
    ref = "Das Wetter ist heute schön."
    assert sentence_chrf("Das Wetter ist heute schön.", ref) > sentence_chrf("Das Haus ist alt.", ref)


def test_comet_without_package_or_checkpoint_is_clear():
    import importlib.util

    expected = InputFileError if importlib.util.find_spec("comet") else MissingExtraError
    with pytest.raises(expected):
        comet_scores(["a"], ["b"], ["c"], "/nonexistent/comet")
