"""YAAL and LongYAAL (Polák et al., 2025, "Better Late Than Never: Evaluation of Latency Metrics for
Simultaneous Speech-to-Text Translation", arXiv 2509.17349), the latency IWSLT 2026 scores
simultaneous systems with, computed by OmniSTEval itself (`omnisteval`, by the paper's first author).

YAAL is LAAL over only the units written before the source ended (a sentence whose first unit
comes after the end is left out); LongYAAL scores a long-form stream: OmniSTEval re-segments the
output onto the reference sentences (its SoftSegmenter alignment, not mWER) and gives each
sentence YAAL with its delays from the sentence's start, counting units until the *stream* ends.
The `_CA` variants score computation-aware delays.

Each function writes the log OmniSTEval reads into a folder and scores it through OmniSTEval's own
loaders and `YAALScorer`, the path its command line takes, so `omnisteval` run by hand on that folder
(`YaalScores.command`) prints the same numbers. Delays may be in any unit (source words, or ms of
audio): OmniSTEval only ever subtracts and compares them, so the log keeps seqpo's unit and the
command prints YAAL in it.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import omnisteval
from omnisteval.io import load_resegmentation_inputs, load_shortform_instances
from omnisteval.resegment import resegment
from omnisteval.scoring import YAALScorer

from ..languages import unit_of
from ..stream import join_units, split_units
from .stream_latency import StreamOutput, StreamSentence


@dataclass(frozen=True)
class YaalSentence:
    """One sentence of a sentence-level run, as OmniSTEval's short-form log holds it."""

    prediction: str
    reference: str
    source_length: float
    delays: list[float]  # per target unit: source read when it was written
    elapsed: list[float] | None = None  # the same, computation-aware (same unit as `delays`)


@dataclass
class YaalScores:
    yaal: float | None  # None when no sentence could be scored
    yaal_ca: float | None
    scored: int  # sentences with a YAAL (OmniSTEval's mean is over these)
    scored_ca: int | None  # the same for YAAL_CA: a unit written after the source ended counts in neither
    signature: str
    command: str  # the `omnisteval` command that prints the same numbers from the written log

    def as_scores(self, name: str) -> dict[str, float | None]:
        """{NAME: ..., NAME_CA: ...} rounded as scores.json has its latencies."""
        return {name: None if self.yaal is None else round(self.yaal, 3),
                f"{name}_CA": None if self.yaal_ca is None else round(self.yaal_ca, 3)}


def omnisteval_seconds(value: float) -> float:
    """`value` as the seconds OmniSTEval reads a segmentation in: it multiplies them by 1000, and
    value/1000*1000 can come back one ulp above `value` (2007 does), which would put a unit
    written exactly at the end of a stream inside it. The largest double whose product is not
    above `value` keeps such a unit out, as the unit's own number says."""
    x = value / 1000
    while x * 1000 > value:
        x = math.nextafter(x, -math.inf)
    return x


def _level(unit: str) -> str:
    return "--char_level" if unit == "char" else "--word_level"  # OmniSTEval's CLI wants one of the two


def _mean_or_none(scorer: YAALScorer, instances) -> float | None:
    value = scorer(instances)
    return None if math.isnan(value) else value


def _yaal_scores(instances, is_longform: bool, with_ca: bool, signature: str, command: str) -> YaalScores:
    """YAAL (or LongYAAL) of OmniSTEval's loaded instances, and its _CA when they have `elapsed`."""
    def mean(computation_aware: bool) -> float | None:
        return _mean_or_none(YAALScorer(computation_aware=computation_aware, is_longform=is_longform), instances)

    return YaalScores(yaal=mean(False), yaal_ca=mean(True) if with_ca else None,
                      scored=_scored(instances, is_longform),
                      scored_ca=_scored(instances, is_longform, computation_aware=True) if with_ca else None,
                      signature=signature, command=command)


def _scored(instances, is_longform: bool, computation_aware: bool = False) -> int:
    scorer = YAALScorer(computation_aware=computation_aware, is_longform=is_longform)
    delays = "emission_ca" if computation_aware else "emission_cu"
    return sum(bool(getattr(i, delays)) and scorer.compute(i) is not None for i in instances)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _in_units(text: str, unit: str) -> str:
    """Text as OmniSTEval counts units: it splits words at spaces and takes every character of a
    character target, spaces too, so character text is written without them (`stream.split_units`)."""
    return join_units(split_units(text, unit), unit)


def _write_references(path: Path, references: list[str], unit: str) -> None:
    path.write_text("".join(_in_units(x, unit) + "\n" for x in references), encoding="utf-8")


def sentence_yaal(folder: str | Path, sentences: Sequence[YaalSentence], target_lang: str) -> YaalScores:
    """YAAL (and YAAL_CA when every sentence has `elapsed`) of sentence-level output, as
    `omnisteval shortform` scores it; writes FOLDER/instances.jsonl and FOLDER/references.txt."""
    if not sentences:
        raise ValueError("YAAL needs at least one sentence")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unit = unit_of(target_lang)
    with_ca = all(s.elapsed is not None for s in sentences)
    rows = []
    for s in sentences:
        row = {"prediction": _in_units(s.prediction, unit), "source_length": s.source_length,
               "delays": list(s.delays)}
        if with_ca:
            row["elapsed"] = list(s.elapsed)
        rows.append(row)
    _write_jsonl(folder / "instances.jsonl", rows)
    _write_references(folder / "references.txt", [s.reference for s in sentences], unit)
    instances = load_shortform_instances(str(folder / "instances.jsonl"), str(folder / "references.txt"),
                                         "delays", "elapsed", char_level=unit == "char")
    return _yaal_scores(
        instances, is_longform=False, with_ca=with_ca,
        signature=f"YAAL|omnisteval:{omnisteval.__version__}|unit:{unit}|ref-len:yes|fix-ca:no",
        command=shlex.join(["omnisteval", "shortform", "--hypothesis_file", str(folder / "instances.jsonl"),
                            "--ref_sentences_file", str(folder / "references.txt"), _level(unit), "--no_quality"]),
    )


def long_yaal(folder: str | Path, outputs: Sequence[StreamOutput], talks: Sequence[Sequence[StreamSentence]],
              target_lang: str) -> YaalScores:
    """LongYAAL (and LongYAAL_CA when every output has `elapsed`) of long-form streams, as
    `omnisteval longform` scores them: `outputs[k]` is what was written for the stream whose
    reference sentences (placed in it) are `talks[k]`. Writes FOLDER/instances.jsonl (one line per
    stream), FOLDER/segmentation.json (each sentence's offset and length, in OmniSTEval's seconds)
    and FOLDER/references.txt. Word targets are Moses-tokenized for the alignment (`--lang`)."""
    if len(outputs) != len(talks):
        raise ValueError(f"need one output per stream: {len(outputs)} outputs, {len(talks)} streams")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unit = unit_of(target_lang)
    lang = target_lang if unit == "word" else None  # OmniSTEval tokenizes no zh/ja
    with_ca = all(o.elapsed is not None for o in outputs)
    rows, segments, references = [], [], []
    for k, (output, talk) in enumerate(zip(outputs, talks)):
        name = f"stream{k}"
        row = {"source": name, "prediction": _in_units(output.text, unit),
               "delays": list(output.delays),
               "source_length": max((s.source_offset + s.source_length for s in talk), default=0)}
        if with_ca:
            row["elapsed"] = list(output.elapsed)
        rows.append(row)
        segments += [{"wav": name, "offset": omnisteval_seconds(s.source_offset),
                      "duration": omnisteval_seconds(s.source_length)} for s in talk]
        references += [s.reference for s in talk]
    _write_jsonl(folder / "instances.jsonl", rows)
    (folder / "segmentation.json").write_text(json.dumps(segments, indent=0), encoding="utf-8")
    _write_references(folder / "references.txt", references, unit)
    char_level = unit == "char"
    ref_words, hyp_words, segmentation, ref_sentences = load_resegmentation_inputs(
        str(folder / "segmentation.json"), None, str(folder / "references.txt"), str(folder / "instances.jsonl"),
        char_level=char_level)
    instances, _ = resegment(ref_words, hyp_words, segmentation, ref_sentences, char_level=char_level, lang=lang)
    return _yaal_scores(
        instances, is_longform=True, with_ca=with_ca,
        signature=f"LongYAAL|omnisteval:{omnisteval.__version__}|seg:softsegmenter|unit:{unit}|lang:{lang or 'none'}"
                  f"|fix-ca:no",
        command=shlex.join(["omnisteval", "longform", "--speech_segmentation", str(folder / "segmentation.json"),
                            "--ref_sentences_file", str(folder / "references.txt"),
                            "--hypothesis_file", str(folder / "instances.jsonl"), _level(unit),
                            *(["--lang", lang] if lang else []), "--no_quality"]),
    )


__all__ = ["YaalScores", "YaalSentence", "long_yaal", "omnisteval_seconds", "sentence_yaal"]
