"""Latency metrics for simultaneous translation, defined as SimulEval 1.1 computes them.

Average Lagging (Ma et al., 2019, STACL), Length-Adaptive AL (Papi et al., 2022), Differentiable
AL (Arivazhagan et al., 2019) and Average Proportion (Cho & Esipova, 2016), plus SimulEval's
speech-to-text StartOffset/EndOffset. All take `delays`: for each written target unit, how much
source had been read (in units, or in ms of audio for speech).

SimulEval computes these inside scorer classes bound to its Instance objects; we need them as pure
functions over lists (rewards, live events, speech), hence this module. `tests/test_metrics_latency.py`
checks every function against SimulEval's scorers on random delay sequences.

`target_length` is the reference length (SimulEval's default `use_ref_len`); pass the prediction
length to get the reference-free variant.
"""

from __future__ import annotations

from collections.abc import Sequence


def _check(delays: Sequence[float], source_length: float) -> None:
    if not delays:
        raise ValueError("latency is undefined for an empty prediction")
    if source_length <= 0:
        raise ValueError("latency is undefined for an empty source")


def _lagging(delays: Sequence[float], source_length: float, target_length: float) -> float:
    # Sum over target units up to tau, the first one written after the whole source was read.
    if delays[0] > source_length:
        return float(delays[0])
    rate = target_length / source_length
    total, tau = 0.0, 0
    for i, d in enumerate(delays):
        total += d - i / rate
        tau = i + 1
        if d >= source_length:
            break
    return total / tau


def average_lagging(delays: Sequence[float], source_length: float, target_length: float) -> float:
    """AL: mean over target units i<=tau of d_i - (i-1)*|X|/|Y|, with |Y| = `target_length`."""
    _check(delays, source_length)
    return _lagging(delays, source_length, target_length)


def length_adaptive_average_lagging(
    delays: Sequence[float], source_length: float, target_length: float
) -> float:
    """LAAL: AL with |Y| = max(prediction length, reference length), so over-generation is not rewarded."""
    _check(delays, source_length)
    return _lagging(delays, source_length, max(len(delays), target_length))


def differentiable_average_lagging(delays: Sequence[float], source_length: float) -> float:
    """DAL: AL where each unit lags at least 1/rate behind the previous one (uses prediction length)."""
    _check(delays, source_length)
    rate = len(delays) / source_length
    total, previous = 0.0, 0.0
    for i, d in enumerate(delays):
        current = d if i == 0 else max(d, previous + 1 / rate)
        total += current - i / rate
        previous = current
    return total / len(delays)


def average_proportion(delays: Sequence[float], source_length: float, target_length: float) -> float:
    """AP: sum of delays / (|X| * |Y|)."""
    _check(delays, source_length)
    return sum(delays) / (source_length * target_length)


def computation_aware_delays(
    delays: Sequence[float], elapsed_ms: Sequence[float], unit_ms: float
) -> list[float]:
    """Delays in source units that also count the model's own compute time.

    Text has no clock, so we simulate a speaker who utters one source unit every `unit_ms`
    milliseconds and never waits for the translator. Unit i is then written at time
    d_i*unit_ms + elapsed_i (elapsed = cumulative compute), which is how SimulEval times speech
    input (`step_to_elapsed`); dividing by unit_ms brings it back to source units.
    """
    if len(delays) != len(elapsed_ms):
        raise ValueError("delays and elapsed must have one entry per target unit")
    return [d + e / unit_ms for d, e in zip(delays, elapsed_ms)]


def latency_scores(
    delays: Sequence[float], source_length: float, target_length: float
) -> dict[str, float]:
    """All four metrics for one sentence; empty dict when latency is undefined."""
    if not delays or source_length <= 0:
        return {}
    return {
        "AL": average_lagging(delays, source_length, target_length),
        "LAAL": length_adaptive_average_lagging(delays, source_length, target_length),
        "DAL": differentiable_average_lagging(delays, source_length),
        "AP": average_proportion(delays, source_length, target_length),
    }


def start_offset(delays: Sequence[float]) -> float:
    """StartOffset: how much source was read before the first target unit was written."""
    if not delays:
        raise ValueError("latency is undefined for an empty prediction")
    return float(delays[0])


def end_offset(delays: Sequence[float], source_length: float) -> float:
    """EndOffset: when the last target unit was written, relative to the end of the source."""
    if not delays:
        raise ValueError("latency is undefined for an empty prediction")
    return float(delays[-1]) - source_length


def speech_latency_scores(
    delays_ms: Sequence[float], elapsed_ms: Sequence[float], source_ms: float, target_length: float
) -> dict[str, float]:
    """Speech-to-text latency of one sentence in ms of audio, as SimulEval scores a
    SpeechToTextInstance: `delays_ms[i]` = audio received when target unit i was written,
    `elapsed_ms[i]` = that plus all computation so far (SimulEval's `elapsed`), `source_ms` =
    audio duration. The `_CA` variants score `elapsed_ms`. Empty dict when latency is undefined."""
    if not delays_ms or source_ms <= 0:
        return {}
    if len(delays_ms) != len(elapsed_ms):
        raise ValueError("delays and elapsed must have one entry per target unit")
    out: dict[str, float] = {}
    for suffix, times in (("", delays_ms), ("_CA", elapsed_ms)):
        out["StartOffset" + suffix] = start_offset(times)
        out["EndOffset" + suffix] = end_offset(times, source_ms)
        out["AL" + suffix] = average_lagging(times, source_ms, target_length)
        out["LAAL" + suffix] = length_adaptive_average_lagging(times, source_ms, target_length)
    return out


# -- one streamed sentence ---------------------------------------------------------------------------
# Every latency of an `Episode` (eval records, `seqpo translate`'s done event, live sessions, RL
# rewards) comes from `episode_latency`, so text and speech are told apart and |Y| is chosen in one place.

def computation_aware_scores(
    delays: Sequence[float], elapsed_ms: Sequence[float], source_length: float, target_length: float,
    unit_ms: float,
) -> dict[str, float]:
    """AL_CA and LAAL_CA of a text sentence at `unit_ms` per source unit (`computation_aware_delays`);
    empty dict when latency is undefined."""
    if not delays or not source_length:
        return {}
    ca = latency_scores(computation_aware_delays(delays, elapsed_ms, unit_ms), source_length, target_length)
    return {"AL_CA": ca["AL"], "LAAL_CA": ca["LAAL"]}


def episode_source_length(episode) -> float:
    """|X| in the unit an episode's latency is in: ms of audio for speech, source units for text."""
    return episode.source_ms if episode.audio_span is not None else float(episode.source_length)


def episode_latency(episode, reference_length: float | None = None, unit_ms: float | None = None) -> dict[str, float]:
    """The latency of one streamed sentence (a `stream.Episode`), in the unit its source came in.

    Text: AL, LAAL, DAL, AP in source units, plus AL_CA / LAAL_CA when `unit_ms` is given.
    Speech (an episode with an `audio_span`): StartOffset, EndOffset, AL, LAAL and their _CA
    variants (the model's time added) in ms of the sentence's audio.
    `reference_length` is |Y| (SimulEval's `use_ref_len`); None uses the prediction's own length
    (SimulEval without a reference). Empty dict when nothing was written.
    """
    if episode.audio_span is not None:
        delays = episode.audio_delays()
        target = len(delays) if reference_length is None else reference_length
        elapsed = computation_aware_delays(delays, episode.elapsed(), 1.0)
        return speech_latency_scores(delays, elapsed, episode.source_ms, target)
    delays, source_length = episode.delays(), episode.source_length
    target = len(delays) if reference_length is None else reference_length
    scores = latency_scores(delays, source_length, target)
    if unit_ms is not None:
        scores.update(computation_aware_scores(delays, episode.elapsed(), source_length, target, unit_ms))
    return scores
