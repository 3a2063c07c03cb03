"""Our latency functions against SimulEval's own scorers, on hand cases and random delays."""

import json
import random
from types import SimpleNamespace

import pytest

from seqpo.metrics import latency as L

scorers = pytest.importorskip("simuleval.evaluator.scorers.latency_scorer")


def simuleval_score(scorer_cls, delays, source_length, ref_length, elapsed=None, ca=False):
    ins = SimpleNamespace(
        delays=list(delays),
        elapsed=list(elapsed) if elapsed is not None else None,
        source_length=source_length,
        reference="x",  # only checked for None; its length comes from reference_length
        reference_length=ref_length,
    )
    return scorer_cls(computation_aware=ca, use_ref_len=True).compute(ins)


def random_case(rng):
    source_length = rng.randint(1, 40)
    # targets shorter and longer than the source, monotone delays within [1, source_length]
    target_length = rng.randint(1, 2 * source_length + 5)
    delays = sorted(rng.randint(1, source_length) for _ in range(target_length))
    if rng.random() < 0.5:
        delays[-1] = source_length
    ref_length = rng.randint(1, 2 * source_length + 5)
    return delays, source_length, ref_length


def test_hand_computed_wait_1():
    # wait-1 on 4 source words, 4 target words: delays 1,2,3,4; AL = mean(1-0, 2-1, 3-2, 4-3) = 1
    assert L.average_lagging([1, 2, 3, 4], 4, 4) == pytest.approx(1.0)
    # offline: everything after the full source; AL = |X| = 4 (tau = 1)
    assert L.average_lagging([4, 4, 4, 4], 4, 4) == pytest.approx(4.0)
    # LAAL ignores a too-short reference: |Y| = max(4, 2) = 4
    assert L.length_adaptive_average_lagging([1, 2, 3, 4], 4, 2) == pytest.approx(1.0)
    assert L.average_proportion([4, 4], 4, 2) == pytest.approx(1.0)


def test_empty_prediction_raises_and_scores_empty():
    with pytest.raises(ValueError):
        L.average_lagging([], 3, 3)
    assert L.latency_scores([], 3, 3) == {}


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_simuleval_on_random_delays(seed):
    rng = random.Random(seed)
    for _ in range(100):
        delays, src, ref = random_case(rng)
        assert L.average_lagging(delays, src, ref) == pytest.approx(
            simuleval_score(scorers.ALScorer, delays, src, ref), abs=1e-6
        )
        assert L.length_adaptive_average_lagging(delays, src, ref) == pytest.approx(
            simuleval_score(scorers.LAALScorer, delays, src, ref), abs=1e-6
        )
        assert L.differentiable_average_lagging(delays, src) == pytest.approx(
            simuleval_score(scorers.DALScorer, delays, src, ref), abs=1e-6
        )
        assert L.average_proportion(delays, src, ref) == pytest.approx(
            simuleval_score(scorers.APScorer, delays, src, ref), abs=1e-6
        )


def test_computation_aware_matches_simuleval_speech_timing():
    """SimulEval times speech as elapsed = read_ms + compute_ms; ours is that divided by unit_ms."""
    rng = random.Random(7)
    unit_ms = 400.0
    for _ in range(200):
        delays, src, ref = random_case(rng)
        compute = sorted(rng.uniform(0, 3000) for _ in delays)
        ours = L.average_lagging(L.computation_aware_delays(delays, compute, unit_ms), src, ref)
        theirs_elapsed = [d * unit_ms + c for d, c in zip(delays, compute)]
        theirs = simuleval_score(
            scorers.ALScorer, delays, src * unit_ms, ref, elapsed=theirs_elapsed, ca=True
        )
        assert ours * unit_ms == pytest.approx(theirs, abs=1e-6)
        ours_laal = L.length_adaptive_average_lagging(
            L.computation_aware_delays(delays, compute, unit_ms), src, ref
        )
        theirs_laal = simuleval_score(
            scorers.LAALScorer, delays, src * unit_ms, ref, elapsed=theirs_elapsed, ca=True
        )
        assert ours_laal * unit_ms == pytest.approx(theirs_laal, abs=1e-6)


def test_speech_offsets_hand_computed():
    # 3 s of audio; target units written at 1.0 s, 1.0 s, 2.5 s and after the end (3.0 s)
    s = L.speech_latency_scores([1000, 1000, 2500, 3000], [1200, 1300, 2900, 3600], 3000, 4)
    assert s["StartOffset"] == 1000 and s["EndOffset"] == 0
    assert s["StartOffset_CA"] == 1200 and s["EndOffset_CA"] == 600
    # AL: rate 4/3000; mean(1000-0, 1000-750, 2500-1500, 3000-2250) = (1000+250+1000+750)/4
    assert s["AL"] == pytest.approx(750.0)
    assert L.speech_latency_scores([], [], 3000, 4) == {}


def simuleval_speech_instance(delays, elapsed, source_ms, reference, unit):
    """A SpeechToTextInstance as SimulEval rebuilds it from an instances.log line (--score-only)."""
    from simuleval.evaluator.instance import LogInstance

    line = {"index": 0, "prediction": "", "delays": delays, "elapsed": elapsed,
            "source_length": source_ms, "reference": reference}
    return LogInstance(json.dumps(line), latency_unit=unit)


@pytest.mark.parametrize("unit", ["word", "char"])
def test_speech_scores_agree_with_simuleval(unit):
    rng = random.Random(11)
    for _ in range(150):
        source_ms = rng.uniform(500, 20000)
        n = rng.randint(1, 40)
        delays = sorted(rng.uniform(0, source_ms) for _ in range(n))
        if rng.random() < 0.5:
            delays[-1] = source_ms
        compute = sorted(rng.uniform(0, 4000) for _ in range(n))
        elapsed = L.computation_aware_delays(delays, compute, 1.0)
        ref_len = rng.randint(1, 50)
        reference = " ".join(["w"] * ref_len) if unit == "word" else "字" * ref_len
        ins = simuleval_speech_instance(delays, elapsed, source_ms, reference, unit)
        ours = L.speech_latency_scores(delays, elapsed, source_ms, ref_len)
        for name, cls in (("StartOffset", scorers.StartOffsetScorer), ("EndOffset", scorers.EndOffsetScorer),
                          ("AL", scorers.ALScorer), ("LAAL", scorers.LAALScorer)):
            for suffix, ca in (("", False), ("_CA", True)):
                theirs = cls(computation_aware=ca, use_ref_len=True).compute(ins)
                assert ours[name + suffix] == pytest.approx(theirs, abs=1e-6), (name + suffix)


def test_episode_latency_text_and_speech():
    from seqpo.stream import Episode, Step

    text = Episode("a b c d", "word", "char", [Step(read=2, written="字字", elapsed_ms=100.0),
                                               Step(read=4, written="字字", elapsed_ms=300.0)])
    # |Y| = reference 4: mean(2-0, 2-1, 4-2) with tau = 3; without a reference |Y| = the 4 written
    assert L.episode_latency(text, 4)["AL"] == pytest.approx(5 / 3)
    assert L.episode_latency(text) == L.latency_scores([2, 2, 4, 4], 4, 4)
    ca = L.episode_latency(text, 4, unit_ms=100.0)  # delays + elapsed/100: 3, 3, 8, 8 -> tau = 3
    assert ca["AL_CA"] == pytest.approx((3 + 2 + 6) / 3) and set(ca) == {"AL", "LAAL", "DAL", "AP", "AL_CA", "LAAL_CA"}
    assert L.episode_latency(Episode("a b", "word", "char", [Step(read=2, written="")])) == {}
    assert L.episode_source_length(text) == 4.0

    speech = Episode("a b c d", "word", "char", [Step(read=2, written="字字", audio_ms=3000.0),
                                                 Step(read=4, written="字字", audio_ms=5000.0)],
                     audio_span=(1000.0, 5000.0))
    s = L.episode_latency(speech, 4)  # delays 2000, 2000, 4000, 4000 ms over 4000 ms
    assert s["StartOffset"] == 2000.0 and s["AL"] == pytest.approx((2000 + 1000 + 2000) / 3)
    assert L.episode_source_length(speech) == 4000.0
