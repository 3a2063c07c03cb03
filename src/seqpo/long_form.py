"""Long-form text: a whole talk or document with no sentence boundaries given, translated as one
stream and scored with StreamLAAL (Papi et al., 2024, StreamAtt, sec. 4; `metrics.stream_latency`)
and LongYAAL (Polák et al., 2025, through OmniSTEval; `metrics.yaal`).

The system cuts the source into sentences itself with the rule the speech cascade uses
(`sentences.split_sentences`: sentence-final punctuation, or `max_sentence_units` units), so it
never waits for a full stop that never comes. Each sentence is its own `EpisodeRun` (context and
cache stay one sentence long; a finished sentence's engine row is closed), and since a sentence's
end is known as soon as its last unit is read, streaming the sentences one after another makes the
same reads and writes as streaming the stream itself. Their outputs are joined into one stream:
the target text in order, each unit's delay counted in source units from the stream start
(sentence offset + `Step.read`), and its model time counted from the stream start too (every
earlier sentence's time first: one translator, one sentence after another).

StreamLAAL_CA uses a clock (`stream_clock`) rather than eval's "delay + all compute so far" (which
SimulEval uses per sentence): over a whole talk that would charge a translator faster than the
speaker for compute it did while waiting for speech, so its lag would grow without bound. Here the
speaker says one unit every `unit_ms` and never waits; the translator runs one step at a time, each
starting once its read has been spoken and the previous step is done. A translator slower than the
speaker falls further behind through the talk, as it would live.

Sentences of all streams are decoded `batch_size` at a time, as in eval; as there, a batch's model
time counts for each sentence in it, so model times (and StreamLAAL_CA) are an upper bound unless
`--batch-size 1`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from .data.long_form import read_long_form
from .errors import InputFileError
from .eval_source import EvalRun, EvalScores, EvalSource
from .languages import LanguagePair
from .metrics.quality import corpus_quality
from .metrics.stream_latency import StreamOutput, StreamSentence, score_streams, stream_laal_signature
from .metrics.yaal import long_yaal
from .policies.base import Policy
from .sentences import split_sentences
from .simulate import run_episodes
from .stream import Episode, append_segment, count_units, count_waits


def stream_clock(steps: list[list[float]], unit_ms: float) -> list[float]:
    """Computation-aware delays (source units) of a stream's target units from its steps, each
    [source units read from the stream start, model ms, target units written], in order: a step
    starts when its read has been spoken (`unit_ms` per unit) and the previous step has ended; the
    units it writes count the time it ends."""
    free, out = 0.0, []
    for read, model_ms, written in steps:
        free = max(free, read * unit_ms) + model_ms
        out += [free / unit_ms] * int(written)
    return out


def stream_record(index: int, offsets: list[int], episodes: list[Episode], target_unit: str,
                  speech: bool = False) -> dict:
    """One stream's output from its sentence episodes (in order, `offsets[k]` source units before
    sentence k): the joined target, its delays and cumulative model time (ms) from the stream start,
    and where the system split its sentences. `speech`: the episodes are the speech cascade's
    over one recording, their delays in ms of audio from its start (`offsets` unused)."""
    text, delays, elapsed, sentences, steps = "", [], [], [], []
    spent, waits = 0.0, 0
    for offset, episode in zip(offsets, episodes):
        target_offset = len(delays)
        if speech:
            read = [s.audio_ms for s in episode.steps]
            delays += [episode.audio_span[0] + d for d in episode.audio_delays()]
            sentences.append({"audio_span": [round(x, 1) for x in episode.audio_span]})
        else:
            read = [offset + s.read for s in episode.steps]
            delays += [offset + d for d in episode.delays()]
            sentences.append({"source_offset": offset, "source_length": episode.source_length})
        steps += [[r, round(s.elapsed_ms, 3), n] for r, s, n in zip(read, episode.steps, episode.units_per_step())]
        waits += count_waits([(s.written, s.display) for s in episode.steps])
        sentences[-1].update(source=episode.source, prediction=episode.prediction, target_offset=target_offset)
        text = append_segment(text, episode.prediction, target_unit)
        elapsed += [spent + e for e in episode.elapsed()]
        spent += sum(step.elapsed_ms for step in episode.steps)
    assert count_units(text, target_unit) == len(delays)  # joining must not merge or split units
    return {"index": index, "prediction": text, "delays": delays, "elapsed": elapsed,
            "source_length": sum(e.source_length for e in episodes), "sentences": sentences,
            "steps": steps,  # [read from the stream start (units, or audio ms), model ms, target units written]
            "wait_fraction": round(waits / max(1, len(steps)), 3),
            "model_ms": round(spent, 1)}


def run_long_form(streams: Iterable[tuple[int, str]], policy: Policy, generator, pair: LanguagePair, chunk: int,
                  max_units: int | None, width: int = 8,
                  on_done: Callable[[int, dict], None] | None = None,
                  on_sentence: Callable[[int, int, Episode], None] | None = None) -> list[dict]:
    """Translate (index, unsegmented source) streams; `on_sentence` sees each finished sentence
    (stream index, sentence number, episode), `on_done` each finished stream's `stream_record`.
    Returns the records in input order."""
    splits: dict[int, list[tuple[int, str]]] = {}
    finished: dict[int, dict[int, Episode]] = {}
    records: dict[int, dict] = {}

    def finish(index: int) -> None:
        offsets = [offset for offset, _ in splits[index]]
        episodes = [finished[index][k] for k in range(len(offsets))]
        records[index] = stream_record(index, offsets, episodes, pair.target_unit)
        if on_done:
            on_done(index, records[index])

    def sentences():
        for index, source in streams:
            splits[index] = split_sentences(source, pair.source_unit, max_units)
            finished[index] = {}
            if not splits[index]:  # nothing to read: an empty stream
                finish(index)
            for k, (_, text) in enumerate(splits[index]):
                yield (index, k), text

    def done(key: tuple[int, int], episode: Episode) -> None:
        index, k = key
        finished[index][k] = episode
        if on_sentence:
            on_sentence(index, k, episode)
        if len(finished[index]) == len(splits[index]):
            finish(index)

    run_episodes(sentences(), policy, generator, pair, chunk, on_done=done, width=width)
    return [records[i] for i in sorted(records)]


def score_long_form(records: list[dict], talks: list[list[StreamSentence]], pair: LanguagePair,
                    unit_ms: float, omnisteval_dir: Path) -> EvalScores:
    """StreamLAAL and LongYAAL (and their _CA, `stream_clock` at `unit_ms` ms per source unit; 1 for
    speech, whose delays are ms), BLEU and chrF of the stream records against each stream's
    reference sentences, with their signatures. OmniSTEval's log (for LongYAAL) is written to
    `omnisteval_dir`."""
    outputs = [StreamOutput(r["prediction"], r["delays"], stream_clock(r["steps"], unit_ms)) for r in records]
    yaal = long_yaal(omnisteval_dir, outputs, talks, pair.target)
    if any(o.delays for o in outputs):
        s = score_streams(outputs, talks, pair.target)
        stream_laal, stream_laal_ca, skipped = s.StreamLAAL, s.StreamLAAL_CA, s.skipped
        quality = {"BLEU": s.BLEU, "chrF": s.chrF, "signatures": dict(s.signature)}
    else:  # nothing written at all: no latency, and quality of empty output
        stream_laal = stream_laal_ca = None
        skipped = sum(map(len, talks))
        quality = corpus_quality([""] * skipped, [x.reference for t in talks for x in t], pair.target)
        quality["signatures"] = {"StreamLAAL": stream_laal_signature(pair.target_unit), **quality["signatures"]}
    stream_signature = quality["signatures"].pop("StreamLAAL")
    return EvalScores({
        "StreamLAAL": _round(stream_laal), "StreamLAAL_CA": _round(stream_laal_ca),
        **yaal.as_scores("LongYAAL"),
        "BLEU": quality["BLEU"], "chrF": quality["chrF"],
        "sentences": sum(map(len, talks)), "skipped": skipped, "yaal_scored_sentences": yaal.scored,
        "yaal_ca_scored_sentences": yaal.scored_ca,
        "streams": len(records), "system_sentences": sum(len(r["sentences"]) for r in records),
        "wait_fraction": round(sum(r["wait_fraction"] for r in records) / max(1, len(records)), 3),
        "model_seconds_per_stream": round(sum(r["model_ms"] for r in records) / 1000 / max(1, len(records)), 3),
    }, quality["signatures"], {"StreamLAAL": stream_signature, "LongYAAL": yaal.signature, "omnisteval": yaal.command})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class StreamSet(EvalSource):
    """Streams of a `seqpo data long-form` file (`--long-form`; `--limit` counts streams), one
    `stream_record` each in `streams.jsonl`, scored with StreamLAAL, LongYAAL, BLEU and chrF."""

    log = "streams.jsonl"
    unit = "stream"
    progress_unit = "stream"
    label = " long-form"
    clock_unit_ms: float | None = None  # ms per unit of the delays for the clock; None: --unit-ms
    computation_aware = "clock: speaker at unit_ms per source unit, one model step at a time"

    def __init__(self, settings, pair: LanguagePair) -> None:
        super().__init__(settings, pair)
        if not Path(settings.long_form).is_file():
            raise InputFileError(f"long-form file not found: {settings.long_form}")
        self.streams = read_long_form(settings.long_form)[: settings.limit]
        if not self.streams:
            raise InputFileError(f"{settings.long_form} has no streams")
        self.keys = [s.index for s in self.streams]

    def input_settings(self) -> dict:
        return {"long_form": str(self.settings.long_form), "max_sentence_units": self.settings.max_sentence_units}

    def talks(self) -> list[list[StreamSentence]]:
        """Each stream's reference sentences, placed in it in the unit of its delays."""
        return [s.sentences() for s in self.streams]

    def input_signature(self) -> dict:
        """What the signature adds about the inputs (speech: the audio folder)."""
        return {}

    def score(self, records: list[dict], run: EvalRun, out: Path) -> EvalScores:
        settings = run.settings
        unit_ms = settings.unit_ms if self.clock_unit_ms is None else self.clock_unit_ms
        scored = score_long_form(records, self.talks(), run.pair, unit_ms, out / "omnisteval")
        scored.signature.update(
            long_form=str(settings.long_form),
            latency_reference_length="reference sentence, after mWER re-segmentation",
            segmentation=f"sentence-final punctuation or {settings.max_sentence_units} source units",
            computation_aware=self.computation_aware, **self.input_signature())
        scored.asr = self.asr_scores(records)
        return scored


class TextStreams(StreamSet):
    """Long-form text: each stream cut into sentences by `run_long_form`, batched as eval batches lines."""

    def run(self, todo: list[int], run: EvalRun, write: Callable[[int, dict], None]) -> None:
        sources = {s.index: s.source for s in self.streams}
        run_long_form([(i, sources[i]) for i in todo], run.policy, run.engine, run.pair, run.settings.chunk,
                      run.settings.max_sentence_units, width=run.settings.batch_size, on_done=write)


__all__ = ["StreamSet", "TextStreams", "run_long_form", "score_long_form", "stream_clock", "stream_record"]
