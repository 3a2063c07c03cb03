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

import copy
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from .data.long_form import read_long_form
from .engine import make_engine
from .errors import InputFileError
from .instances import LEGACY_DEFAULTS, signature
from .languages import LanguagePair
from .metrics.quality import corpus_quality
from .metrics.stream_latency import StreamOutput, StreamSentence, score_streams, stream_laal_signature
from .metrics.wer import corpus_wer
from .metrics.yaal import long_yaal
from .model import load_model, uses_chat_template
from .policies.base import Policy
from .resume import check_run_settings, read_complete_jsonl
from .sentences import split_sentences
from .simulate import run_episodes
from .speech.long_form import run_spoken_streams, spoken_streams
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
                    unit_ms: float, omnisteval_dir: Path) -> dict:
    """StreamLAAL and LongYAAL (and their _CA, `stream_clock` at `unit_ms` ms per source unit; 1 for
    speech, whose delays are ms), BLEU and chrF of the stream records against each stream's
    reference sentences. OmniSTEval's log (for LongYAAL) is written to `omnisteval_dir`."""
    outputs = [StreamOutput(r["prediction"], r["delays"], stream_clock(r["steps"], unit_ms)) for r in records]
    yaal = long_yaal(omnisteval_dir, outputs, talks, pair.target)
    if any(o.delays for o in outputs):
        s = score_streams(outputs, talks, pair.target)
        stream_laal, stream_laal_ca, skipped = s.StreamLAAL, s.StreamLAAL_CA, s.skipped
        quality = {"BLEU": s.BLEU, "chrF": s.chrF, "signatures": s.signature}
    else:  # nothing written at all: no latency, and quality of empty output
        stream_laal = stream_laal_ca = None
        skipped = sum(map(len, talks))
        quality = corpus_quality([""] * skipped, [x.reference for t in talks for x in t], pair.target)
        quality["signatures"] = {"StreamLAAL": stream_laal_signature(pair.target_unit), **quality["signatures"]}
    return {
        "StreamLAAL": _round(stream_laal), "StreamLAAL_CA": _round(stream_laal_ca),
        **yaal.as_scores("LongYAAL"),
        "BLEU": quality["BLEU"], "chrF": quality["chrF"],
        "sentences": sum(map(len, talks)), "skipped": skipped, "yaal_scored_sentences": yaal.scored,
        "yaal_ca_scored_sentences": yaal.scored_ca,
        "signatures": {**quality["signatures"], "LongYAAL": yaal.signature, "omnisteval": yaal.command},
        "streams": len(records), "system_sentences": sum(len(r["sentences"]) for r in records),
        "wait_fraction": round(sum(r["wait_fraction"] for r in records) / max(1, len(records)), 3),
        "model_seconds_per_stream": round(sum(r["model_ms"] for r in records) / 1000 / max(1, len(records)), 3),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def evaluate_long_form(settings, loaded=None, progress: bool = True) -> dict:
    """`seqpo eval --long-form FILE`: translate each stream of a `seqpo data long-form` file (or resume:
    finished streams in OUT/streams.jsonl are kept), then score them; returns the scores also written
    to OUT/scores.json. With `--audio-dir` the streams are spoken (`speech.long_form`) and their
    latency is in ms of audio."""
    pair = settings.validate()
    if not Path(settings.long_form).is_file():
        raise InputFileError(f"long-form file not found: {settings.long_form}")
    streams = read_long_form(settings.long_form)[: settings.limit]
    if not streams:
        raise InputFileError(f"{settings.long_form} has no streams")
    speech = bool(settings.audio_dir)
    spoken = spoken_streams(settings.audio_dir, streams, pair) if speech else None  # all checked before a model loads
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = settings.build_policy()
    chat = bool(loaded.chat) if loaded is not None else \
        uses_chat_template(settings.chat_template, settings.model, settings.decoding)
    settings = copy.copy(settings)  # not dataclasses.replace: __post_init__ would resolve --adapter again
    settings.chat_template = "on" if chat else "off"
    if speech:
        settings.batch_size = 1  # the cascade decodes one sentence at a time, whatever --batch-size says
    run_settings = {
        "pair": str(pair), **policy.settings(), "chunk": settings.chunk, "model": settings.model,
        "adapter": settings.adapter, "long_form": str(settings.long_form),
        "max_sentence_units": settings.max_sentence_units, "decoding": settings.decoding,
        "slot": settings.slot if settings.decoding == "slots" else None, "chat_template": settings.chat_template,
        "quantize": settings.quantize,
    }
    if speech:
        run_settings.update(audio_dir=str(settings.audio_dir), **settings.asr_settings())
    check_run_settings(out / "settings.json", run_settings, out, legacy=LEGACY_DEFAULTS)

    path = out / "streams.jsonl"
    done = {r["index"]: r for r in read_complete_jsonl(path)}
    todo = [(s.index, s.source) for s in streams if s.index not in done]
    if loaded is None and todo and not speech:
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template,
                            settings.decoding, settings.quantize)
    generator = make_engine(loaded, settings.decoding, settings.slot, settings.batch_size,
                            few_shot=settings.use_few_shot(), lookahead=settings.lookahead,
                            write_ahead=settings.write_ahead) if todo and not speech else None
    started = time.perf_counter()
    bar = tqdm(total=len(streams), initial=len(streams) - len(todo), unit="stream", disable=not progress,
               desc=f"{pair} {settings.policy} long-form{' speech' if speech else ''}", dynamic_ncols=True)
    with path.open("a", encoding="utf-8") as fh:
        def write(index: int, record: dict) -> None:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done[index] = record
            bar.update(1)

        def heard(index: int, episodes: list[Episode], asr) -> None:
            record = stream_record(index, [0] * len(episodes), episodes, pair.target_unit, speech=True)
            record.update(source_length=round(spoken[index].ms, 1), transcript=" ".join(e.source for e in episodes),
                          asr_ms=round(asr.compute_ms, 1), asr_cpu_ms=round(asr.cpu_ms, 1), asr_decodes=asr.decodes)
            write(index, record)

        if speech:
            run_spoken_streams([i for i, _ in todo], spoken, settings, loaded, heard)
        else:
            run_long_form(todo, policy, generator, pair, settings.chunk, settings.max_sentence_units,
                          width=settings.batch_size, on_done=write)
    bar.close()
    wall = time.perf_counter() - started
    records = [done[s.index] for s in streams]
    talks = [spoken[s.index].sentences if speech else s.sentences() for s in streams]
    scores = score_long_form(records, talks, pair, 1.0 if speech else settings.unit_ms, out / "omnisteval")
    quality_signatures = scores.pop("signatures")
    stream_signature = quality_signatures.pop("StreamLAAL")
    yaal_signatures = {key: quality_signatures.pop(key) for key in ("LongYAAL", "omnisteval")}
    scores["signature"] = signature(settings, pair, policy.settings(), {"signatures": quality_signatures})
    scores["signature"].update(
        StreamLAAL=stream_signature, **yaal_signatures, long_form=str(settings.long_form),
        latency_reference_length="reference sentence, after mWER re-segmentation",
        segmentation=f"sentence-final punctuation or {settings.max_sentence_units} source units",
        computation_aware="clock: speaker at unit_ms per source unit, one model step at a time")
    if speech:  # recomputed from the records, so a resumed run scores alike
        scores["WER"] = round(corpus_wer([r["transcript"] for r in records], [s.source for s in streams],
                                         pair.source_unit), 2)  # characters for zh/ja (CER)
        scores["asr_seconds_per_stream"] = round(sum(r["asr_ms"] for r in records) / 1000 / len(records), 3)
        scores["signature"].update(
            latency_unit={"source": "ms of audio", "target": pair.target_unit}, unit_ms=None,
            audio_dir=str(settings.audio_dir),
            computation_aware="clock: the talk's audio in real time, one step (ASR decoding since the last "
                              "step included) at a time",
            **settings.asr_signature())
    scores["wall_seconds_per_stream"] = round(wall / len(todo), 3) if todo else None
    (out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False))
    return scores


__all__ = ["evaluate_long_form", "run_long_form", "score_long_form", "stream_clock", "stream_record"]
