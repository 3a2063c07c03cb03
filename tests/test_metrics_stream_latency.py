"""StreamLAAL: hand-computed streams, sentence-level LAAL as the one-sentence case, simulstream's own
published test cases, and (when simulstream is installed) its scorer on random streams."""

from __future__ import annotations

import random

import pytest

from seqpo.metrics.latency import length_adaptive_average_lagging
from seqpo.metrics.stream_latency import StreamOutput, StreamSentence, score_streams, stream_laal, stream_laal_signature

from random_streams import random_stream


def test_perfect_segmentation():
    # Sentence 1: source units 0-3, sentence 2: units 3-5 of the stream.
    talk = [StreamSentence("a b c", 0, 3), StreamSentence("d e", 3, 2)]
    r = stream_laal("a b c d e", [1, 2, 3, 5, 5], talk, "word")
    assert [s.text for s in r.segments] == ["a b c", "d e"]
    # 1: (1-0 + 2-1 + 3-2)/3 = 1.  2: delays 2,2 relative to offset 3; d_1 = |X| = 2 stops: 2/1 = 2.
    assert r.laal == [1.0, 2.0]
    assert r.stream_laal == 1.5 and r.skipped == 0 and r.laal_ca is None and r.stream_laal_ca is None


def test_output_of_a_sentence_written_before_its_source_starts():
    # "on" is written at delay 3, before sentence 2's source starts at 4: its relative delay is -1.
    talk = [StreamSentence("the cat sat", 0, 4), StreamSentence("on the mat", 4, 4)]
    r = stream_laal("the cat sat on the mat", [1, 2, 3, 3, 6, 8], talk, "word")
    assert [s.text for s in r.segments] == ["the cat sat", "on the mat"]
    # |Y|/|X| = 3/4.  1: (1 + (2-4/3) + (3-8/3))/3 = 2/3.  2: (-1 + (2-4/3) + (4-8/3))/3 = 1/3.
    assert r.laal == pytest.approx([2 / 3, 1 / 3])
    assert r.stream_laal == pytest.approx(0.5)


def test_extra_and_missing_words_move_the_boundary():
    talk = [StreamSentence("a b c", 0, 3), StreamSentence("d e f", 3, 3)]
    extra = stream_laal("a b c x d e f", [1, 2, 3, 3, 4, 5, 6], talk, "word")
    assert [s.delays for s in extra.segments] == [[1, 2, 3, 3], [4, 5, 6]]
    # 1: |Y| = max(4, 3) = 4, rate 4/3: 1 + (2-3/4) + (3-6/4) = 3.75 over tau = 3 -> 1.25.  2: 1 + 1 + 1 -> 1.
    assert extra.laal == pytest.approx([1.25, 1.0])
    missing = stream_laal("a b d e f", [1, 2, 4, 5, 6], talk, "word")
    assert [s.text for s in missing.segments] == ["a b", "d e f"]
    # 1: |Y| = max(2, 3) = 3: (1 + 1)/2 = 1.  2: 1.
    assert missing.laal == [1.0, 1.0]


def test_sentence_without_output_is_skipped():
    talk = [StreamSentence("a b", 0, 2), StreamSentence("c d", 2, 2), StreamSentence("e f", 4, 2)]
    r = stream_laal("a b e f", [1, 2, 5, 6], talk, "word", elapsed=[2, 3, 6, 8])
    assert [s.text for s in r.segments] == ["a b", "", "e f"]
    assert r.laal == [1.0, None, 1.0] and r.skipped == 1 and r.stream_laal == 1.0
    # CA: 1: (2 + (3-1))/2 = 2 (d_1 = 2 = |X| stops at tau=1: 2).  3: 6-4 = 2 = |X| stops: 2.
    assert r.laal_ca == [2.0, None, 2.0]


def test_zh_characters_are_units():
    talk = [StreamSentence("今天很好。", 0, 3), StreamSentence("我们走吧。", 3, 2)]
    r = stream_laal("今天好。我们走吧。", [1, 1, 2, 3, 4, 4, 5, 5, 5], talk, "char")
    assert [s.text for s in r.segments] == ["今天好。", "我们走吧。"]
    # 1: |Y| = max(4, 5) = 5, rate 5/3: 1 + (1-0.6) + (2-1.2) + (3-1.8) = 3.4 / 4 = 0.85.
    # 2: relative 1,1,2,2,2, |X| = 2, rate 5/2: 1 + (1-0.4) + (2-0.8) = 2.8 / 3.
    assert r.laal == pytest.approx([0.85, 2.8 / 3])


def test_one_sentence_stream_is_sentence_level_laal():
    rng = random.Random(0)
    for _ in range(50):
        n, src = rng.randint(1, 12), rng.randint(1, 10)
        delays = sorted(rng.randint(1, src + 2) for _ in range(n))
        ref = " ".join("w" for _ in range(rng.randint(1, 12)))
        hyp = " ".join("h" for _ in range(n))
        expected = length_adaptive_average_lagging(delays, src, len(ref.split()))
        assert stream_laal(hyp, delays, [StreamSentence(ref, 0, src)], "word").stream_laal == expected
        offset = [d + 100 for d in delays]  # the same sentence later in a stream
        assert stream_laal(hyp, offset, [StreamSentence(ref, 100, src)], "word").stream_laal == pytest.approx(expected)


def test_simulstream_published_cases():
    # The two cases of simulstream's uts/metrics/test_stream_laal.py (delays in seconds of audio).
    talk = [StreamSentence("A New York, sono a capo di un'associazione no profit, chiamata Robin Hood.", 12.61, 4.07),
            StreamSentence("Quando non combatto la povertà, combatto gli incendi come assistente capitano di una "
                           "brigata di pompieri volontari.", 16.9, 5.14)]
    hyp = ("Tornando a New York, sono il capo dello sviluppo per un non-profit chiamato Robin Hood. Quando non sto "
           "combattendo la povertà, sto combattendo i fuochi.")
    delays = [14.0] * 4 + [16.0] * 9 + [18.0] * 8 + [20.0] * 4
    elapsed = [18.22] * 4 + [19.93] * 9 + [23.01] * 8 + [27.30] * 4
    r = stream_laal(hyp, delays, talk, "word", elapsed)
    assert r.stream_laal == pytest.approx(0.868587, abs=1e-4)
    assert r.stream_laal_ca == pytest.approx(5.86, abs=1e-4)

    talk = [StreamSentence("今天她看起很好，", 12.61, 3.07), StreamSentence("我们一起去公园散步吧。", 16.9, 3.14),
            StreamSentence("Amy", 21.0, 0.5), StreamSentence("今天心情很好", 21.5, 2.0)]
    # simulstream counts the space after "Amy" as a character (delay 22.0 / 23.0); seqpo does not.
    delays = [14, 14, 14, 15, 15, 16, 17, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 21, 22, 22, 22, 24, 24, 24, 24,
              24, 24]
    elapsed = [14.5, 14.5, 14.5, 15.2, 15.2, 16.8, 17.5, 18.0, 18.5, 18.5, 18.5, 20.1, 20.1, 21.3, 21.3, 22.0,
               22.0, 22.0, 23.0, 23.0, 23.0, 25.0, 25.0, 25.0, 25.0, 25.0, 25.0]
    r = stream_laal("今天她很漂亮，我们一起去花园跑步吧。Amy 今天心情很好", delays, talk, "char", elapsed)
    assert [s.text for s in r.segments] == ["今天她很漂亮，", "我们一起去花园跑步吧。", "Amy", "今天心情很好"]
    assert r.stream_laal == pytest.approx(1.333312, abs=1e-4)
    assert r.stream_laal_ca == pytest.approx(2.074095, abs=1e-4)


def test_score_streams_pools_sentences_and_scores_quality():
    talks = [[StreamSentence("a b c d", 0, 4), StreamSentence("e f g h", 4, 4)], [StreamSentence("i j k l", 0, 4)]]
    delays = [[1, 2, 3, 4, 6, 7, 8, 8], [4, 4, 4, 4]]
    outputs = [StreamOutput("a b c d e f g h", delays[0], [d + 1 for d in delays[0]]),
               StreamOutput("i j k l", delays[1], [5] * 4)]
    s = score_streams(outputs, talks, "en")
    # Sentence LAALs 1, 2 (relative 2,3,4: (2+2+2)/3) and 4 (d_1 = |X|): their mean 7/3, not the mean
    # of the per-stream means (1.5 and 4).
    assert s.StreamLAAL == pytest.approx(7 / 3) and s.sentences == 3 and s.skipped == 0
    # CA: 2 (2, 3-1, 4-2), 3 (3, 4-1), 5 (5 > |X|).
    assert s.StreamLAAL_CA == pytest.approx(10 / 3)
    assert s.BLEU == 100.0 and s.chrF == 100.0
    assert s.signature["StreamLAAL"] == stream_laal_signature("word")
    assert "tok:13a" in s.signature["BLEU"]
    no_ca = score_streams([StreamOutput(o.text, o.delays) for o in outputs], talks, "en")
    assert no_ca.StreamLAAL_CA is None
    shifted = score_streams([StreamOutput("a b c d e f g", delays[0][:7]), outputs[1]], talks, "en")
    assert shifted.BLEU < 100.0


def test_errors():
    with pytest.raises(ValueError, match="no output was aligned"):
        _ = stream_laal("", [], [StreamSentence("a", 0, 1)], "word").stream_laal
    with pytest.raises(ValueError, match="at least one reference"):
        stream_laal("a", [1], [], "word")
    with pytest.raises(ValueError, match="one output per stream"):
        score_streams([], [[StreamSentence("a", 0, 1)]], "en")


def test_same_as_simulstream_scorer():
    pytest.importorskip("mweralign")
    simulstream = pytest.importorskip("simulstream.metrics.scorers.latency.stream_laal")
    from argparse import Namespace

    from simulstream.metrics.readers import OutputWithDelays, ReferenceSentenceDefinition
    from simulstream.metrics.scorers.latency import LatencyScoringSample

    rng = random.Random(2)
    for unit in ("word", "char"):
        for _ in range(100):
            hyp, delays, sentences = random_stream(rng, unit)
            if not hyp:
                continue
            elapsed = [d + 0.5 * i for i, d in enumerate(delays)]
            mine = stream_laal(hyp, delays, sentences, unit, elapsed)
            sample = LatencyScoringSample("talk", OutputWithDelays(hyp, list(delays), list(elapsed)),
                                          [ReferenceSentenceDefinition(s.reference, s.source_offset, s.source_length)
                                           for s in sentences])
            theirs = simulstream.StreamLaal(Namespace(latency_unit=unit)).score([sample])
            assert mine.stream_laal == pytest.approx(theirs.ideal_latency, abs=1e-9)
            assert mine.stream_laal_ca == pytest.approx(theirs.computational_aware_latency, abs=1e-9)
