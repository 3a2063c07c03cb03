from seqpo.stream import Episode, Step, append_segment, chunk_source, count_units, join_reads


def test_word_chunks():
    assert chunk_source("a b c d e", "word", 2) == ["a b", "c d", "e"]
    assert chunk_source("  ", "word", 1) == []


def test_char_chunks_keep_text_exact():
    text = "我们 在 2023年发布了GPU"
    reads = chunk_source(text, "char", 3)
    assert join_reads(reads, "char") == text
    assert all(count_units(r, "char") == 3 for r in reads[:-1])
    assert sum(count_units(r, "char") for r in reads) == count_units(text, "char")


def test_episode_delays_and_prediction():
    ep = Episode(source="a b c", source_unit="word", target_unit="char")
    ep.steps = [Step(1, "", 5.0), Step(2, "我们", 10.0), Step(3, "走吧", 20.0, finished=True)]
    assert ep.prediction == "我们走吧"
    assert ep.delays() == [2, 2, 3, 3]
    assert ep.elapsed() == [15.0, 15.0, 35.0, 35.0]
    assert ep.wait_fraction == 1 / 3


def test_append_segment_words():
    assert append_segment("", " Hallo ", "word") == "Hallo"
    assert append_segment("Hallo", "Welt", "word") == "Hallo Welt"
    assert append_segment("Hallo", "", "word") == "Hallo"
