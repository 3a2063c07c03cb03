import pytest

from seqpo.metrics.wer import corpus_wer, word_errors


def test_word_errors_hand_cases():
    assert word_errors("The city council.", "the city council") == (0, 3)  # case and punctuation do not count
    assert word_errors("the council", "the city council") == (1, 3)  # one deletion
    assert word_errors("a the city council", "the city council") == (1, 3)  # one insertion
    assert word_errors("the town council", "the city council") == (1, 3)  # one substitution
    assert word_errors("", "the city") == (2, 2)
    assert word_errors("I've", "I’ve") == (0, 1)  # typographic and ASCII apostrophes agree


def test_corpus_wer_pools_words():
    assert corpus_wer(["a b c d", "x"], ["a b c d", "y"]) == pytest.approx(100 * 1 / 5)


def test_chinese_and_japanese_count_characters():
    # Whisper writes Chinese with spaces between its pieces (faster-whisper's word split) or without:
    # both are the same characters; punctuation does not count
    assert word_errors("我 想 喝 一杯 茶。", "我想喝一杯茶", unit="char") == (0, 6)
    assert word_errors("我想喝一杯水", "我想喝一杯茶。", unit="char") == (1, 6)  # one substitution
    assert word_errors("お茶", "お茶をください", unit="char") == (5, 7)  # five deletions
    assert corpus_wer(["我想", "茶"], ["我想喝", "水"], unit="char") == pytest.approx(100 * 2 / 4)
