"""Run a policy over a test set: `instances.jsonl` (SimulEval's instance fields, one line per
finished sentence, appended as it finishes) and `scores.json` (corpus quality + mean latency, with
YAAL from OmniSTEval, whose log goes to `omnisteval/`; for re-translation also normalized
erasure, `NE`, from each instance's `displays`).

Re-running with the same output folder resumes after the finished sentences; a line cut short by
a kill is dropped and its sentence redone.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .config import PolicySettings, SpeakerClockSettings, SpeechSettings, check_at_least, setting
from .engine import engine_class, make_engine
from .errors import InputFileError, SettingsError
from .files import load_parallel
from .instances import LEGACY_DEFAULTS, add_computation_aware, instance_record, signature
from .languages import LanguagePair, parse_pair
from .metrics.erasure import corpus_normalized_erasure
from .metrics.latency import computation_aware_delays
from .metrics.quality import comet_scores, corpus_quality
from .metrics.wer import corpus_wer
from .metrics.yaal import YaalSentence, sentence_yaal
from .model import load_model, uses_chat_template
from .prompts import check_supported
from .resume import check_run_settings, read_complete_jsonl
from .long_form import evaluate_long_form
from .sentences import SentenceSettings
from .simulate import run_episodes
from .speech.evaluate import load_audio_set, run_audio_set
from .stream import count_units, count_waits


@dataclass
class EvalSettings(SpeakerClockSettings, PolicySettings, SpeechSettings, SentenceSettings):
    src: str = setting(None, "source file, one sentence per line (with --audio-dir: the transcripts, "
                       "default DIR/source.en)")
    ref: str = setting(None, "reference file, aligned with --src line by line (with --audio-dir: "
                       "default DIR/reference.<target language>)")
    audio_dir: str = setting(None, "evaluate on speech in the source language (see --asr): a folder of audio "
                             "files (wav, flac, mp3, m4a, ogg, opus), one sentence each in name order (see `seqpo data "
                             "speech`); latency in ms of audio")
    long_form: str = setting(None, "evaluate on unsegmented streams instead: a `seqpo data long-form` JSONL file; "
                             "the system cuts its own sentences; OUT/streams.jsonl and StreamLAAL scores "
                             "(--limit counts streams); with --audio-dir, spoken: DIR is the `seqpo data "
                             "speech` folder of the same --src, NNNN.wav line NNNN, latency in ms")
    limit: int = setting(None, "evaluate only the first N lines")
    out: str = setting(None, "output folder for instances.jsonl and scores.json (resumes if present)")
    comet: str = setting(None, "path to a local unbabel-comet checkpoint to also report COMET")
    batch_size: int = setting(8, "sentences decoded together (batched model calls)")

    def validate(self) -> LanguagePair:
        pair = check_supported(parse_pair(self.pair))
        if self.audio_dir:
            self.check_speech(pair)
            if engine_class(self.decoding).reserves_source:  # a sentence's source region is reserved in advance
                raise SettingsError(f"speech evaluation does not support --decoding {self.decoding}: "
                                    "use cached, reencode or append")
        for name in ("out",) if self.audio_dir or self.long_form else ("src", "ref", "out"):
            if not getattr(self, name):
                raise InputFileError(f"--{name} is required")
        self.check_policy()
        check_at_least(self, 1, "batch_size", "limit", "max_sentence_units")
        return pair


SPEECH_LATENCY_KEYS = ("StartOffset", "EndOffset", "AL", "LAAL", "StartOffset_CA", "EndOffset_CA", "AL_CA",
                       "LAAL_CA")

def read_finished(path: Path) -> dict[int, dict]:
    """Finished instances by index; a trailing line cut off by a kill is truncated away."""
    return {record["index"]: record for record in read_complete_jsonl(path)}


def yaal_sentences(records: list[dict], speech: bool, unit_ms: float) -> list[YaalSentence]:
    """The records as OmniSTEval's short-form log: computation-aware delays in the unit of `delays`
    (speech: `elapsed` already is; text: the model time at `unit_ms` per source unit, as LAAL_CA)."""
    return [YaalSentence(r["prediction"], r["reference"], r["source_length"], r["delays"],
                         r["elapsed"] if speech else computation_aware_delays(r["delays"], r["elapsed"], unit_ms))
            for r in records]


def score(records: list[dict], pair: LanguagePair, settings: EvalSettings, policy_settings: dict,
          out: Path) -> dict:
    """Scores of the finished records; OmniSTEval's log (for YAAL) is written to OUT/omnisteval."""
    speech = bool(settings.audio_dir)
    for r in records:  # computation-aware latency always with this run's --unit-ms, even after a resume
        if not speech:  # speech latency is measured in ms of audio, not simulated
            add_computation_aware(r, settings.unit_ms)
    hyps = [r["prediction"] for r in records]
    refs = [r["reference"] for r in records]
    quality = corpus_quality(hyps, refs, pair.target)
    scored = [r["metric"] for r in records if r["metric"]]

    def mean(key):
        vals = [m[key] for m in scored if key in m]
        return round(statistics.fmean(vals), 3) if vals else None

    steps = [s for r in records for s in r["steps"]]
    seconds = sum(s["elapsed_ms"] for s in steps) / 1000
    yaal = sentence_yaal(out / "omnisteval", yaal_sentences(records, speech, settings.unit_ms), pair.target)
    result = {
        "BLEU": quality["BLEU"],
        "chrF": quality["chrF"],
        **{k: mean(k) for k in (SPEECH_LATENCY_KEYS if speech else ("AL", "LAAL", "DAL", "AP", "AL_CA", "LAAL_CA"))},
        **yaal.as_scores("YAAL"),
        "wait_fraction": round(sum(count_waits([(s["written"], s.get("display")) for s in r["steps"]])
                                   for r in records) / max(1, len(steps)), 3),
        # model time each sentence waited for (a batch's time counts for every sentence in it)
        "model_seconds_per_sentence": round(seconds / max(1, len(records)), 3),
        "sentences": len(records),
        "latency_scored_sentences": len(scored),
        "yaal_scored_sentences": yaal.scored,
        "yaal_ca_scored_sentences": yaal.scored_ca,
    }
    retranslated = [r["displays"] for r in records if "displays" in r]
    if retranslated:  # re-translation only: a policy that only appends erases nothing (NE 0, left out)
        final = sum(count_units(d[-1], pair.target_unit) for d in retranslated if d)
        result["NE"] = round(corpus_normalized_erasure(retranslated, pair.target_unit), 3) if final else None
    if settings.comet:
        system, per_sentence = comet_scores([r["source"] for r in records], hyps, refs, settings.comet)
        result["COMET"] = round(system, 2)
    result["signature"] = signature(settings, pair, policy_settings, quality)
    result["signature"].update(YAAL=yaal.signature, omnisteval=yaal.command)
    if speech:
        # recomputed, like CA latency, so a resume scores alike
        result["WER"] = round(corpus_wer([r["source"] for r in records], [r["transcript"] for r in records],
                                         pair.source_unit), 2)  # characters for zh/ja (CER)
        result["signature"].update(
            latency_unit={"source": "ms of audio", "target": pair.target_unit}, unit_ms=None,
            **settings.asr_signature())
    return result


def evaluate(settings: EvalSettings, loaded=None, progress: bool = True) -> dict:
    """Evaluate (or resume evaluating) a policy; returns the scores also written to scores.json."""
    if settings.long_form:
        return evaluate_long_form(settings, loaded, progress)
    pair = settings.validate()
    if settings.audio_dir:
        wavs, sources, references = load_audio_set(settings.audio_dir, pair, settings.src, settings.ref,
                                                    settings.limit)
    else:
        sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = settings.build_policy()
    run_settings = {"pair": str(pair), **policy.settings(), "chunk": settings.chunk,
                    "model": settings.model, "adapter": settings.adapter,
                    "src": str(settings.src), "ref": str(settings.ref)}
    run_settings.update(decoding=settings.decoding, quantize=settings.quantize,
                        slot=settings.slot if engine_class(settings.decoding).reserves_source else None)
    # the chat template as resolved: a given model brings its own (older runs had none)
    chat = bool(loaded.chat) if loaded is not None else \
        uses_chat_template(settings.chat_template, settings.model, settings.decoding)
    settings = copy.copy(settings)  # not dataclasses.replace: __post_init__ would resolve --adapter again
    settings.chat_template = "on" if chat else "off"  # what the signature records
    if settings.audio_dir:
        settings.batch_size = 1  # the cascade decodes one sentence at a time, whatever --batch-size says
    run_settings["chat_template"] = settings.chat_template
    if settings.audio_dir:
        run_settings.update(audio_dir=str(settings.audio_dir), **settings.asr_settings())
    check_run_settings(out / "settings.json", run_settings, out, legacy=LEGACY_DEFAULTS)

    path = out / "instances.jsonl"
    done = read_finished(path)
    todo = [(i, s) for i, s in enumerate(sources) if i not in done]
    if loaded is None and any(s.strip() for _, s in todo) and not settings.audio_dir:
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template,
                            settings.decoding, settings.quantize)
    generator = make_engine(loaded, settings.decoding, settings.slot, settings.batch_size,
                            few_shot=settings.use_few_shot(), lookahead=settings.lookahead,
                            write_ahead=settings.write_ahead) if loaded and not settings.audio_dir else None

    started = time.perf_counter()
    bar = tqdm(total=len(sources), initial=len(done), unit="sent", disable=not progress,
               desc=f"{pair} {settings.policy}", dynamic_ncols=True)
    with path.open("a", encoding="utf-8") as fh:
        def write(index, record):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done[index] = record
            bar.update(1)

        if settings.audio_dir:
            run_audio_set([i for i, _ in todo], wavs, sources, references, settings, loaded, write)
        else:
            run_episodes(todo, policy, generator, pair, settings.chunk, width=settings.batch_size,
                         on_done=lambda i, episode: write(i, instance_record(i, episode, references[i],
                                                                             settings.unit_ms)))
    bar.close()
    wall = time.perf_counter() - started
    records = [done[i] for i in range(len(sources))]
    scores = score(records, pair, settings, policy.settings(), out)
    # wall time of this invocation only (a resumed run times the sentences it ran)
    scores["wall_seconds_per_sentence"] = round(wall / len(todo), 3) if todo else None
    (out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False))
    return scores
