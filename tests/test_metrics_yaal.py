"""YAAL and LongYAAL through OmniSTEval: hand-computed sentences and streams, YAAL = LAAL where no
unit comes after the source ends, and the `omnisteval` command line run on the logs we write."""

from __future__ import annotations

import random

import pytest

from seqpo.metrics.latency import length_adaptive_average_lagging
from seqpo.metrics.stream_latency import StreamOutput, StreamSentence
from seqpo.metrics.yaal import YaalSentence, long_yaal, omnisteval_seconds, sentence_yaal

from omnisteval_cli import omnisteval_cli
from random_streams import random_stream


def test_sentence_yaal_leaves_out_units_written_after_the_source_ends(tmp_path):
    sentences = [
        # |Y| = 4, |X| = 4: d < 4 counts, so (1-0 + 2-1)/2 = 1 (LAAL would also count the first 4: 4/3)
        YaalSentence("a b c d", "w x y z", 4, [1, 2, 4, 4], [2, 3, 5, 5]),
        YaalSentence("a b", "p q", 3, [3, 3], [3.5, 3.5]),  # offline: nothing before the end, skipped
        YaalSentence("", "r s", 2, [], []),  # nothing written, skipped
        # over-generation: |Y| = max(3, 2), rate 1.5: (1 + 1 - 1/1.5)/2 = 2/3
        YaalSentence("a b c", "a b", 2, [1, 1, 2], [1.5, 1.5, 2.5]),
    ]
    s = sentence_yaal(tmp_path, sentences, "de")
    assert s.yaal == pytest.approx((1 + 2 / 3) / 2) and s.scored == s.scored_ca == 2
    # CA: 1: (2 + 3-1)/2 = 2.  4: (1.5 + 1.5 - 1/1.5)/2 = 7/6
    assert s.yaal_ca == pytest.approx((2 + 7 / 6) / 2)
    assert s.signature.startswith("YAAL|omnisteval:0.1.10|unit:word")
    assert {p.name for p in tmp_path.iterdir()} == {"instances.jsonl", "references.txt"}


def test_sentence_yaal_is_undefined_when_every_sentence_waits_for_its_end(tmp_path):
    s = sentence_yaal(tmp_path, [YaalSentence("a b", "a b", 2, [2, 2], [2, 2])], "de")
    assert s.yaal is None and s.yaal_ca is None and s.scored == 0


def test_yaal_is_laal_when_no_unit_comes_after_the_source(tmp_path):
    rng = random.Random(0)
    sentences = []
    for _ in range(30):
        source = rng.randint(2, 12)
        n = rng.randint(1, 10)
        delays = sorted(rng.randint(1, source - 1) for _ in range(n))
        sentences.append(YaalSentence(" ".join("x" * n), " ".join("y" * rng.randint(1, 10)), source, delays))
    s = sentence_yaal(tmp_path, sentences, "de")
    laal = [length_adaptive_average_lagging(x.delays, x.source_length, len(x.reference.split())) for x in sentences]
    assert s.yaal == pytest.approx(sum(laal) / len(laal), abs=1e-12) and s.yaal_ca is None


def test_long_yaal_counts_a_sentence_until_the_stream_ends(tmp_path):
    talk = [StreamSentence("a b", 0, 3), StreamSentence("c d", 3, 2)]
    out = StreamOutput("a b c d", [1, 3, 4, 5], [2, 3, 4.5, 5])
    s = long_yaal(tmp_path, [out], [talk], "en")
    # 1: rate 2/3, (1 + 3-1.5)/2 = 1.25 (a unit after its own sentence's source still counts).
    # 2: relative 1, 2; the stream ends 2 after its start, so "d" (at the end) is left out: 1.
    assert s.yaal == pytest.approx(1.125) and s.scored == 2
    assert {p.name for p in tmp_path.iterdir()} == {"instances.jsonl", "references.txt", "segmentation.json"}
    # CA: 1: (2 + 3-1.5)/2 = 1.75.  2: 1.5.
    assert s.yaal_ca == pytest.approx(1.625) and s.scored_ca == 2
    # a translator that falls behind: what it writes after the stream ended counts nowhere
    late = long_yaal(tmp_path / "late", [StreamOutput("a b c d", [1, 3, 4, 5], [2, 5, 9, 12])], [talk], "en")
    assert late.yaal_ca == pytest.approx(2.0) and late.scored_ca == 1
    assert s.signature.startswith("LongYAAL|omnisteval:0.1.10|seg:softsegmenter|unit:word|lang:en")


def test_long_yaal_zh_characters_and_a_sentence_without_output(tmp_path):
    talk = [StreamSentence("今天好。", 0, 3), StreamSentence("我们走吧。", 3, 2)]
    # a space in the output is no unit (seqpo.stream.split_units)
    s = long_yaal(tmp_path, [StreamOutput("今天好。 我们走吧。", [1, 1, 2, 3, 4, 4, 5, 5, 5])], [talk], "zh")
    # 1: rate 4/3: (1 + 1-0.75 + 2-1.5 + 3-2.25)/4 = 0.625.  2: relative 1,1,2,2,2, rate 5/2, the
    # units at the stream end left out: (1 + 1-0.4)/2 = 0.8
    assert s.yaal == pytest.approx((0.625 + 0.8) / 2) and s.yaal_ca is None
    empty = long_yaal(tmp_path / "empty", [StreamOutput("今天好", [1, 2, 3])], [talk], "zh")
    assert empty.scored == 1  # 我们走吧。 got nothing: skipped, as OmniSTEval skips it


def test_a_unit_written_at_the_very_end_stays_out_despite_rounding(tmp_path):
    # OmniSTEval reads segment offsets in seconds and multiplies by 1000; for this k, k/1000*1000 > k,
    # which would put a unit written at the end (d = k) just inside the stream
    k = next(k for k in range(1000, 3000) if k / 1000 * 1000 > k)
    assert omnisteval_seconds(k) * 1000 <= k < omnisteval_seconds(k + 1) * 1000
    talk = [StreamSentence("a b", 0, k - 1), StreamSentence("c d", k - 1, 1)]
    s = long_yaal(tmp_path, [StreamOutput("a b c d", [1, 2, k - 0.75, k])], [talk], "en")
    # 2: rate 2/1: 0.25 alone ("d", at d = k, left out; with it (0.25 + 1-0.5)/2)
    assert s.yaal == pytest.approx(((1 + 2 - (k - 1) / 2) / 2 + 0.25) / 2)


def test_no_output_at_all_has_no_long_yaal(tmp_path):
    s = long_yaal(tmp_path, [StreamOutput("", [])], [[StreamSentence("a", 0, 1)]], "en")
    assert s.yaal is None and s.scored == 0


def random_talks(rng: random.Random, unit: str):
    talks, outputs = [], []
    for _ in range(rng.randint(1, 3)):
        hyp, delays, sentences = random_stream(rng, unit, fractions=(0, 0.25, 0.5))
        talks.append(sentences)
        outputs.append(StreamOutput(hyp, delays, [d + 0.5 * i for i, d in enumerate(delays)]))
    return outputs, talks


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_same_as_the_omnisteval_command_on_random_streams(lang, tmp_path):
    rng, scored = random.Random(3), 0
    for case in range(3):
        outputs, talks = random_talks(rng, "char" if lang == "zh" else "word")
        s = long_yaal(tmp_path / str(case), outputs, talks, lang)
        theirs = omnisteval_cli(s.command)
        assert s.yaal == pytest.approx(theirs["LongYAAL (CU)"], abs=1e-4)
        assert s.yaal_ca == pytest.approx(theirs["LongYAAL (CA)"], abs=1e-4)
        scored += s.yaal is not None
    assert scored >= 2


def test_same_as_the_omnisteval_command_on_random_sentences(tmp_path):
    rng = random.Random(4)
    sentences = []
    for _ in range(20):
        source = rng.randint(1, 10)
        delays = sorted(rng.randint(1, source + 1) for _ in range(rng.randint(0, 8)))
        sentences.append(YaalSentence(" ".join("x" * len(delays)), " ".join("y" * rng.randint(1, 9)), source,
                                      delays, [d + 0.3 * i for i, d in enumerate(delays)]))
    s = sentence_yaal(tmp_path, sentences, "de")
    theirs = omnisteval_cli(s.command)
    assert s.yaal == pytest.approx(theirs["YAAL (CU)"], abs=1e-4)
    assert s.yaal_ca == pytest.approx(theirs["YAAL (CA)"], abs=1e-4)
