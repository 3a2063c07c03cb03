"""`seqpo data long-form`: talk-length streams from a sentence-aligned test set, for StreamLAAL.

Runs of consecutive lines (a WMT test set keeps its documents' sentences in order) are joined into
one source stream that carries no sentence boundaries; each stream keeps its reference sentences
and where each sentence's source lies in the stream (offset and length in source units), which is
what `seqpo.metrics.stream_latency` re-segments and scores against.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import setting
from ..errors import InputFileError, SettingsError
from ..files import load_parallel
from ..languages import parse_pair
from ..metrics.stream_latency import StreamSentence
from ..prompts import check_supported
from ..resume import check_run_settings, read_complete_jsonl
from ..stream import count_units
from .partial_settings import settings_path


@dataclass
class LongFormSettings:
    pair: str = setting("en-zh", "language pair, source-target; the source language decides the units "
                        "(words; characters for zh/ja) and how lines are joined (a space; nothing for zh/ja)")
    src: str = setting(None, "source file, one sentence per line, in document order (e.g. a WMT test set)")
    ref: str = setting(None, "reference file, aligned with --src line by line")
    out: str = setting(None, "output JSONL, one stream per line (re-running resumes; other settings are refused)")
    lines: int = setting(20, "consecutive lines joined into one stream (the last stream may be shorter)")
    limit: int = setting(None, "use only the first N lines")


@dataclass
class LongFormStream:
    """One talk-length stream: its source text and the reference sentences it must be scored against."""

    index: int
    source: str  # the source sentences joined, with no marker of where one ends
    references: list[str]
    source_offsets: list[int]  # source units in `source` before each sentence
    source_lengths: list[int]  # source units of each sentence
    lines: list[int]  # the 0-based line of --src/--ref each sentence came from

    def sentences(self) -> list[StreamSentence]:
        """What `seqpo.metrics.stream_latency.stream_laal` scores this stream against."""
        return [StreamSentence(r, o, n) for r, o, n in zip(self.references, self.source_offsets, self.source_lengths)]


def long_form_streams(sources: list[str], references: list[str], lines: int, source_unit: str) -> list[LongFormStream]:
    """Join every `lines` consecutive lines into a stream. Lines with an empty source or reference
    are left out (a sentence without source has no latency); a run left with none makes no stream."""
    if lines < 1:
        raise ValueError("a stream needs at least one line")
    separator = "" if source_unit == "char" else " "
    streams = []
    for first in range(0, len(sources), lines):
        kept = [i for i in range(first, min(first + lines, len(sources)))
                if sources[i].strip() and references[i].strip()]
        if not kept:
            continue
        texts = [sources[i].strip() for i in kept]
        lengths = [count_units(t, source_unit) for t in texts]
        offsets = [sum(lengths[:k]) for k in range(len(lengths))]
        source = separator.join(texts)
        assert count_units(source, source_unit) == sum(lengths)  # joining must not merge or split units
        streams.append(LongFormStream(len(streams), source, [references[i].strip() for i in kept],
                                      offsets, lengths, kept))
    return streams


def read_long_form(path: str | Path) -> list[LongFormStream]:
    """The streams of a `seqpo data long-form` file, in order."""

    try:
        return [LongFormStream(**r) for r in read_complete_jsonl(Path(path), truncate=False)]
    except TypeError as exc:
        raise InputFileError(f"{path} is not a `seqpo data long-form` file ({exc})") from exc


def build_long_form(settings: LongFormSettings) -> dict:
    """Write the streams to `settings.out`, appending only those a previous run did not finish."""
    pair = check_supported(parse_pair(settings.pair))
    for name in ("src", "ref", "out"):
        if not getattr(settings, name):
            raise InputFileError(f"--{name} is required")
    for name in ("lines", "limit"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise SettingsError(f"--{name} must be at least 1, got {value}")
    sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    streams = long_form_streams(sources, references, settings.lines, pair.source_unit)
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_run_settings(settings_path(out), {"pair": str(pair), "src": str(settings.src), "ref": str(settings.ref),
                                            "lines": settings.lines, "limit": settings.limit}, out)
    done = len(read_complete_jsonl(out))  # streams are written in order; a cut last line is dropped
    with out.open("a", encoding="utf-8") as fh:
        for stream in streams[done:]:
            fh.write(json.dumps(asdict(stream), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"out": str(out), "streams": len(streams), "written": max(0, len(streams) - done),
            "sentences": sum(len(s.references) for s in streams),
            "skipped_lines": len(sources) - sum(len(s.references) for s in streams)}
