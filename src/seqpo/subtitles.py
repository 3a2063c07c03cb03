"""Subtitle files (SubRip .srt, WebVTT .vtt) of a streamed translation: one cue per translated
sentence, shown from its first write to its last, in source time: ms of audio for speech, and for
text a speaker's clock of `unit_ms` per source unit (the clock of the computation-aware scores).

Cues never overlap and never last less than `MIN_CUE_MS` (`place_cues`). The web page builds the
same cues from a live session's events (`serve/static/app.js`, `sessionCues`); the two follow the
same rules.
"""

from __future__ import annotations

import html
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pysubs2

from .errors import InputFileError, SettingsError
from .stream import Episode, wait_flags

FORMATS = {".srt": "srt", ".vtt": "vtt"}
# the shortest cue: a sentence written in one step (an offline policy's) would otherwise have no
# duration; subtitle style guides ask for about 5/6 s at least, so a viewer can read a few words
MIN_CUE_MS = 1000.0


@dataclass
class Cue:
    start_ms: float
    end_ms: float
    text: str


def subtitle_format(path: str) -> str:
    """The format a subtitle path asks for by its suffix (srt or vtt); its folder must exist."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise SettingsError(f"--subtitles {path}: the file name must end in .srt or .vtt")
    if not Path(path).resolve().parent.is_dir():
        raise InputFileError(f"--subtitles {path}: folder {Path(path).parent} does not exist")
    return fmt


def cue_text(prediction: str) -> str:
    """A translation as one cue line: control characters (a raw model can write ESC, NUL) are dropped
    and whitespace runs (newlines too, which would end a cue) become one space."""
    shown = "".join(ch for ch in prediction if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(shown.split())


def write_times(episode: Episode, times: list[float]) -> tuple[float, float] | None:
    """(first, last) time of the steps that changed the shown translation (`times[i]` is step i's),
    or None when nothing was written. Re-translation: the updates whose display changed it."""
    changed = [time for time, wait in zip(times, wait_flags([(s.written, s.display) for s in episode.steps]))
               if not wait]
    return (changed[0], changed[-1]) if changed else None


def place_cues(spans: list[tuple[float, float, str]], end_ms: float | None = None,
               min_ms: float = MIN_CUE_MS) -> list[Cue]:
    """Cues from (first write, last write, text) in sentence order: each lasts at least `min_ms`
    (less only when `end_ms` leaves too little room for them all), starts no earlier than the one
    before, and an earlier cue is clipped where the next one starts; with `end_ms` (the source's
    length) a cue pushed past it is pulled back, and the ones before it with it."""
    if not spans:
        return []
    if end_ms is not None:
        min_ms = min(min_ms, end_ms / len(spans))
    starts = [max(0.0, s) for s, _, _ in spans]
    ends = [e for _, e, _ in spans]
    for i in range(len(spans)):
        if i:  # room for the previous cue's minimum
            starts[i] = max(starts[i], starts[i - 1] + min_ms)
        ends[i] = max(ends[i], starts[i] + min_ms)
    for i in range(len(spans) - 1):
        ends[i] = min(ends[i], starts[i + 1])  # clip the earlier cue
    if end_ms is not None:
        limit = end_ms
        for i in reversed(range(len(spans))):
            ends[i] = min(ends[i], limit)
            starts[i] = min(starts[i], ends[i] - min_ms)
            limit = starts[i]
    return [Cue(s, e, text) for s, e, (_, _, text) in zip(starts, ends, spans)]


def episode_cues(episodes: list[Episode], unit_ms: float = 400.0, end_ms: float | None = None) -> list[Cue]:
    """The cues of consecutive sentences. Speech episodes (`audio_span`) are timed by each step's
    `audio_ms`; text ones by the clock: a step that had read `read` units of a sentence that starts
    `offset` units into the text runs at (offset + read) * unit_ms, and the text lasts all its
    units (`end_ms` defaults to that). Sentences with an empty translation get no cue."""
    spans, offset = [], 0
    for episode in episodes:
        if episode.audio_span is not None:
            times = [step.audio_ms for step in episode.steps]
        else:
            times = [(offset + step.read) * unit_ms for step in episode.steps]
            offset += episode.source_length
        span, text = write_times(episode, times), cue_text(episode.prediction)
        if span is not None and text:
            spans.append((*span, text))
    speech = any(episode.audio_span is not None for episode in episodes)
    return place_cues(spans, end_ms if end_ms is not None or speech else offset * unit_ms)


def format_subtitles(cues: list[Cue], fmt: str) -> str:
    """The cues as SRT or WebVTT text (pysubs2 writes the file). Times are cut to whole ms, downwards
    so that no cue ends after the source does and cues that touch still touch."""
    subs = pysubs2.SSAFile()
    for cue in cues:
        # WebVTT cue text is HTML-like: & < > must be escaped (SRT has no escapes; players show it as is)
        text = html.escape(cue.text, quote=False) if fmt == "vtt" else cue.text
        subs.append(pysubs2.SSAEvent(start=math.floor(cue.start_ms), end=math.floor(cue.end_ms), text=text))
    # keep_ssa_tags: the text is written as it is, not read as SubStation markup ({...} would be dropped)
    return subs.to_string(fmt, keep_ssa_tags=True)


def write_subtitles(path: str, cues: list[Cue]) -> None:
    Path(path).write_text(format_subtitles(cues, subtitle_format(path)), encoding="utf-8")


__all__ = ["MIN_CUE_MS", "Cue", "cue_text", "episode_cues", "format_subtitles", "place_cues", "subtitle_format",
           "write_subtitles"]
