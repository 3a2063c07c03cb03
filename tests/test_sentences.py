"""The sentence-end rule shared by the speech cascade and long-form text."""

import pytest

import random

from seqpo.sentences import SentenceCutter, closes_sentence, ends_sentence, split_sentences


@pytest.mark.parametrize("unit, ends", [("today.", True), ("you?", True), ('"Stop!"', True), ("(fine.)", True),
                                        ("。", True), ("？", True), ("e.g", False), ("tea,", False), ("", False)])
def test_ends_sentence(unit, ends):
    assert ends_sentence(unit) is ends


def test_closes_at_punctuation_or_length():
    assert closes_sentence("end.", 1, None)
    assert not closes_sentence("end.", 1, None, at_punctuation=False)
    assert closes_sentence("word", 3, 3) and not closes_sentence("word", 2, 3)


def test_word_stream_splits_at_sentence_ends_with_offsets():
    text = "The weather is nice today.  I like tea,\nplease! Thanks"
    assert split_sentences(text, "word") == [(0, "The weather is nice today."), (5, "I like tea, please!"),
                                             (9, "Thanks")]


def test_a_sentence_without_an_end_is_closed_at_max_units():
    words = " ".join(f"w{i}" for i in range(7))
    assert split_sentences(words, "word", max_units=3) == [(0, "w0 w1 w2"), (3, "w3 w4 w5"), (6, "w6")]
    # an end mark before the limit starts the count again
    assert split_sentences("a b. c d e f", "word", max_units=3) == [(0, "a b."), (2, "c d e"), (5, "f")]


def test_char_stream_keeps_substrings_and_counts_characters():
    assert split_sentences("今天 天气很好。请给我一杯茶！我们", "char") == [
        (0, "今天 天气很好。"), (7, "请给我一杯茶！"), (14, "我们")]
    assert split_sentences("一二三四五", "char", max_units=2) == [(0, "一二"), (2, "三四"), (4, "五")]


def test_empty_and_bad_input():
    assert split_sentences("  \n ", "word") == []
    with pytest.raises(ValueError):
        split_sentences("a b", "word", max_units=0)


def cut_in_pieces(text: str, unit: str, max_units: int | None, seed: int) -> list[str]:
    """`text` fed to a SentenceCutter in random pieces; the closed sentences as split_sentences gives them."""
    rng = random.Random(seed)
    cutter, sentences, current, i = SentenceCutter(unit, max_units), [], "", 0
    while i < len(text):
        n = rng.randint(1, 6)
        for piece, closes in cutter.cut(text[i : i + n]):
            current += piece
            if closes:
                sentences.append(current)
                current = ""
        i += n
    if current.strip():  # the end closes the open sentence
        sentences.append(current)
    cutter.reset()
    if unit == "word":
        return [" ".join(s.split()) for s in sentences]
    return [s.strip() for s in sentences]


@pytest.mark.parametrize("text, unit, max_units", [
    ("The weather is nice today.  I like tea,\nplease! Thanks", "word", None),
    ("a b. c d e f g h i. j", "word", 3),
    ('He said "Stop!" and left. Then (fine.) ok', "word", 4),
    ("今天天气很好。 我们团队发布了新版本！好", "char", None),
    ("一二三四五六七。八九", "char", 3),
])
def test_cutter_on_pieces_matches_split_sentences(text, unit, max_units):
    expected = [s for _, s in split_sentences(text, unit, max_units)]
    for seed in range(20):
        assert cut_in_pieces(text, unit, max_units, seed) == expected


def test_cutter_pieces_keep_the_text_and_bound_memory():
    cutter = SentenceCutter("word")
    assert cutter.cut("One two. Three fo") == [("One two. ", True), ("Three fo", False)]
    assert cutter.cut("ur.") == [("ur.", False)]  # the word is not complete yet
    assert cutter.cut("  Five") == [(" ", True), (" Five", False)]
    cutter.cut("x" * 10000)
    assert len(cutter._word) <= 64
    with pytest.raises(ValueError):
        SentenceCutter("line")
