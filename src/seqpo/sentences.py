"""Where a sentence of an unsegmented source ends: the one rule the speech cascade (ASR words) and
long-form text (`seqpo.long_form`) share, so an unbounded talk becomes a sequence of sentence
episodes with bounded context (as simultaneous systems for unsegmented input do, e.g. the
segmentation baseline of Papi et al., 2024, StreamAtt, sec. 5).

A source unit (a word, or a character for zh/ja) whose text ends in sentence-final punctuation,
optionally followed by closing quotes or brackets, ends its sentence; a sentence that reaches
`max_units` units without one is closed there, so the system never waits for a full stop that never
comes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import setting
from .policies.base import SENTENCE_END

_ENDS = re.compile(rf"[{re.escape(SENTENCE_END)}][\"'”’)\]）」』]*$")


@dataclass
class SentenceSettings:
    """How an unsegmented source is cut into sentences (long-form text)."""

    max_sentence_units: int = setting(100, "long-form input: close a sentence after this many source units "
                                      "(words; characters for zh/ja) when no . ? ! has ended it")


def ends_sentence(unit: str) -> bool:
    """The unit's text ends a sentence (., ?, ! or their full-width forms, then closing quotes)."""
    return bool(_ENDS.search(unit))


def closes_sentence(unit: str, length: int, max_units: int | None, at_punctuation: bool = True) -> bool:
    """The sentence ends at this unit, its `length`-th: it ends a sentence, or the sentence is full."""
    return (at_punctuation and ends_sentence(unit)) or (max_units is not None and length >= max_units)


def split_sentences(text: str, unit: str, max_units: int | None = None) -> list[tuple[int, str]]:
    """Cut an unsegmented source into sentences: (source units before it, its text) for each.
    Word sentences are their words joined by one space; character sentences keep the original
    substring (inner spaces included), stripped."""
    if max_units is not None and max_units < 1:
        raise ValueError("a sentence needs room for at least one unit")
    out: list[tuple[int, str]] = []
    offset = 0
    if unit == "word":
        current: list[str] = []
        for word in text.split():
            current.append(word)
            if closes_sentence(word, len(current), max_units):
                out.append((offset, " ".join(current)))
                offset += len(current)
                current = []
        if current:
            out.append((offset, " ".join(current)))
        return out
    if unit != "char":
        raise ValueError(f"unknown unit {unit!r}")
    start, count = 0, 0
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        count += 1
        if closes_sentence(ch, count, max_units):
            out.append((offset, text[start : i + 1].strip()))
            offset, start, count = offset + count, i + 1, 0
    if count:
        out.append((offset, text[start:].strip()))
    return out


__all__ = ["SentenceSettings", "closes_sentence", "ends_sentence", "split_sentences"]
