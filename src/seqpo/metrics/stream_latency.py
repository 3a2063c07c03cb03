"""StreamLAAL: latency and quality of one long unsegmented stream (a talk), as simulstream scores it
for IWSLT (Papi et al., 2024, "StreamAtt: Direct Streaming Speech-to-Text Translation with
Attention-based Audio History Selection", ACL; simulstream's `stream_laal` scorer).

The output of the whole stream is re-segmented against the reference sentences by mWER alignment
(`resegment.py`); each sentence then gets sentence-level LAAL (`latency.py`) with its delays made
relative to where that sentence starts in the source stream and its own source length as |X|, and
StreamLAAL is the mean over sentences. A sentence to which no output was aligned has no LAAL and
is left out of the mean (simulstream skips it with a warning); `skipped` counts them. BLEU and chrF
score the re-segmented output against the references (`quality.corpus_quality`).

Delays are in whatever the stream is measured in (source units read, or ms of audio), the same for
`delays`, `elapsed`, `source_offset` and `source_length`. `tests/test_metrics_stream_latency.py`
checks this against hand-computed cases and simulstream's published test cases.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import __version__
from ..languages import unit_of
from ..stream import count_units
from .latency import length_adaptive_average_lagging
from .quality import corpus_quality
from .resegment import Segment, resegment


@dataclass(frozen=True)
class StreamSentence:
    """One reference sentence of a stream and where its source lies in the stream."""

    reference: str
    source_offset: float  # source before this sentence in the stream (units, or ms of audio)
    source_length: float  # this sentence's own source length, same unit


@dataclass
class StreamOutput:
    """What a system wrote for one stream."""

    text: str  # everything it wrote, in order
    delays: list[float]  # per unit of `text`: source read (from the stream's start) when it was written
    elapsed: list[float] | None = None  # the same with computation time added (StreamLAAL_CA)


@dataclass
class StreamLatency:
    """StreamLAAL of one stream, with what it was computed from."""

    segments: list[Segment]  # the output re-segmented, one per reference sentence
    laal: list[float | None]  # per sentence; None where no output was aligned (skipped)
    laal_ca: list[float | None] | None = None  # computation-aware, when `elapsed` was given
    signature: str = ""

    @property
    def skipped(self) -> int:
        return sum(x is None for x in self.laal)

    @property
    def stream_laal(self) -> float:
        return _mean(self.laal)

    @property
    def stream_laal_ca(self) -> float | None:
        return None if self.laal_ca is None else _mean(self.laal_ca)


@dataclass
class StreamScores:
    """Corpus scores of several streams: StreamLAAL over all their sentences, BLEU/chrF on the
    re-segmented output."""

    StreamLAAL: float
    StreamLAAL_CA: float | None
    BLEU: float
    chrF: float
    sentences: int
    skipped: int
    signature: dict = field(default_factory=dict)


def _mean(values: Sequence[float | None]) -> float:
    scored = [v for v in values if v is not None]
    if not scored:
        raise ValueError("StreamLAAL is undefined: no output was aligned to any reference sentence")
    return statistics.fmean(scored)


def stream_laal_signature(unit: str) -> str:
    """Every setting that changes a StreamLAAL number, sacrebleu-style."""
    return f"StreamLAAL|seg:mwer|case:ascii-insensitive|unit:{unit}|ref-len:yes|empty:skip|seqpo:{__version__}"


def _sentence_laal(delays: Sequence[float], sentence: StreamSentence, unit: str) -> float | None:
    if not delays:
        return None
    relative = [d - sentence.source_offset for d in delays]
    return length_adaptive_average_lagging(relative, sentence.source_length,
                                           count_units(sentence.reference, unit))


def stream_laal(hypothesis: str, delays: Sequence[float], sentences: Sequence[StreamSentence], unit: str,
                elapsed: Sequence[float] | None = None) -> StreamLatency:
    """StreamLAAL of one stream: `hypothesis` is everything written for it, `delays[i]` how much
    source (from the stream's start) had been read when its unit i was written (`unit`: word, or
    char for zh/ja targets); `elapsed` the same with computation time added, for StreamLAAL_CA."""
    if not sentences:
        raise ValueError("StreamLAAL needs at least one reference sentence")
    segments = resegment(hypothesis, delays, [s.reference for s in sentences], unit, elapsed)
    laal = [_sentence_laal(seg.delays, s, unit) for seg, s in zip(segments, sentences)]
    laal_ca = None
    if elapsed is not None:
        laal_ca = [_sentence_laal(seg.elapsed, s, unit) for seg, s in zip(segments, sentences)]
    return StreamLatency(segments, laal, laal_ca, stream_laal_signature(unit))


def score_streams(outputs: Sequence[StreamOutput], talks: Sequence[Sequence[StreamSentence]],
                  target_lang: str) -> StreamScores:
    """StreamLAAL (mean over every sentence of every stream, as simulstream averages), StreamLAAL_CA
    when every output has elapsed times, and corpus BLEU/chrF of the re-segmented output.
    `outputs[k]` is what the system wrote for the stream whose sentences are `talks[k]`."""
    if len(outputs) != len(talks):
        raise ValueError(f"need one output per stream: {len(outputs)} outputs, {len(talks)} streams")
    unit = unit_of(target_lang)
    results = [stream_laal(o.text, o.delays, talk, unit, o.elapsed) for o, talk in zip(outputs, talks)]
    laal = [x for r in results for x in r.laal]
    with_ca = all(r.laal_ca is not None for r in results)
    hypotheses = [seg.text for r in results for seg in r.segments]
    references = [s.reference for talk in talks for s in talk]
    quality = corpus_quality(hypotheses, references, target_lang)
    return StreamScores(
        StreamLAAL=_mean(laal),
        StreamLAAL_CA=_mean([x for r in results for x in r.laal_ca]) if with_ca else None,
        BLEU=quality["BLEU"], chrF=quality["chrF"], sentences=len(laal), skipped=sum(x is None for x in laal),
        signature={"StreamLAAL": stream_laal_signature(unit), **quality["signatures"]},
    )
