"""Sentence-level eval: each line of `--src` (or audio file of `--audio-dir`) is one episode, logged
as one SimulEval instance in `instances.jsonl` and scored with corpus quality, mean latency (AL,
LAAL, DAL, AP and their computation-aware _CA) and YAAL from OmniSTEval, whose log goes to
`omnisteval/`; for re-translation also normalized erasure, `NE`, from each instance's `displays`.

`SentenceSet` is what text and speech sentences share (the log, the run settings, the scores);
`TextSentences` reads `--src/--ref` and runs the lines in lockstep batches (`simulate.run_episodes`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from .eval_source import EvalRun, EvalScores, EvalSource
from .files import load_parallel
from .instances import add_computation_aware, instance_record
from .languages import LanguagePair
from .metrics.erasure import corpus_normalized_erasure
from .metrics.latency import computation_aware_delays
from .metrics.quality import comet_scores, corpus_quality
from .metrics.yaal import YaalSentence, sentence_yaal
from .simulate import run_episodes
from .stream import count_units, count_waits

TEXT_LATENCY_KEYS = ("AL", "LAAL", "DAL", "AP", "AL_CA", "LAAL_CA")


class SentenceSet(EvalSource):
    """Sentences, one instance record each (`instances.instance_record`), scored alike."""

    log = "instances.jsonl"
    unit = "sentence"
    progress_unit = "sent"
    latency_keys = TEXT_LATENCY_KEYS  # the per-instance latency scores averaged into scores.json
    references: list[str]

    @property
    def keys(self) -> list[int]:
        return list(range(len(self.references)))

    def input_settings(self) -> dict:
        return {"src": str(self.settings.src), "ref": str(self.settings.ref)}

    def add_computation_aware(self, records: list[dict], unit_ms: float) -> None:
        """Each record's AL_CA / LAAL_CA, always at this run's --unit-ms, even after a resume."""
        for r in records:
            add_computation_aware(r, unit_ms)

    def ca_delays(self, record: dict, unit_ms: float) -> list[float]:
        """A record's computation-aware delays in the unit of its `delays`: the model time at
        `unit_ms` per source unit, as LAAL_CA."""
        return computation_aware_delays(record["delays"], record["elapsed"], unit_ms)

    def score(self, records: list[dict], run: EvalRun, out: Path) -> EvalScores:
        return score_sentences(self, records, run.pair, run.settings, out)


def yaal_sentences(source: SentenceSet, records: list[dict], unit_ms: float) -> list[YaalSentence]:
    """The records as OmniSTEval's short-form log, with the computation-aware delays of `source`."""
    return [YaalSentence(r["prediction"], r["reference"], r["source_length"], r["delays"], source.ca_delays(r, unit_ms))
            for r in records]


def score_sentences(source: SentenceSet, records: list[dict], pair: LanguagePair, settings, out: Path) -> EvalScores:
    """Scores of the finished records; OmniSTEval's log (for YAAL) is written to OUT/omnisteval."""
    source.add_computation_aware(records, settings.unit_ms)
    hyps = [r["prediction"] for r in records]
    refs = [r["reference"] for r in records]
    quality = corpus_quality(hyps, refs, pair.target)
    scored = [r["metric"] for r in records if r["metric"]]

    def mean(key):
        vals = [m[key] for m in scored if key in m]
        return round(statistics.fmean(vals), 3) if vals else None

    steps = [s for r in records for s in r["steps"]]
    seconds = sum(s["elapsed_ms"] for s in steps) / 1000
    yaal = sentence_yaal(out / "omnisteval", yaal_sentences(source, records, settings.unit_ms), pair.target)
    result = {
        "BLEU": quality["BLEU"],
        "chrF": quality["chrF"],
        **{k: mean(k) for k in source.latency_keys},
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
        system, _ = comet_scores([r["source"] for r in records], hyps, refs, settings.comet)
        result["COMET"] = round(system, 2)
    return EvalScores(result, quality["signatures"], {"YAAL": yaal.signature, "omnisteval": yaal.command},
                  source.asr_scores(records))


class TextSentences(SentenceSet):
    """`--src` and `--ref`: one sentence a line, streamed in lockstep batches of `--batch-size`."""

    def __init__(self, settings, pair: LanguagePair, lines: tuple[list[str], list[str]] | None = None) -> None:
        """`lines`: the (sources, references) already read (`([], [])` to only score finished records)."""
        super().__init__(settings, pair)
        self.sources, self.references = lines or load_parallel(settings.src, settings.ref, settings.limit)

    def needs_model(self, todo: list[int]) -> bool:
        return any(self.sources[i].strip() for i in todo)  # an empty line has no steps

    def run(self, todo: list[int], run: EvalRun, write: Callable[[int, dict], None]) -> None:
        run_episodes([(i, self.sources[i]) for i in todo], run.policy, run.engine, run.pair, run.settings.chunk,
                     width=run.settings.batch_size,
                     on_done=lambda i, episode: write(i, instance_record(i, episode, self.references[i],
                                                                         run.settings.unit_ms)))


__all__ = ["SentenceSet", "TextSentences", "score_sentences", "yaal_sentences"]
