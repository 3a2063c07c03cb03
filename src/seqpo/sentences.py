"""Where a sentence of an unsegmented source ends: the one rule the speech cascade (ASR words) and
long-form text (`seqpo.long_form`) share, so an unbounded talk becomes a sequence of sentence
episodes with bounded context (as simultaneous systems for unsegmented input do, e.g. the
segmentation baseline of Papi et al., 2024, StreamAtt, sec. 5).

A source unit (a word, or a character for zh/ja) whose text ends in sentence-final punctuation,
optionally followed by closing quotes or brackets, ends its sentence; a sentence that reaches
`max_units` units without one is closed there, so the system never waits for a full stop that never
comes. `SentenceCutter` applies the same rule to text that arrives in pieces (the server's long-form
sessions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import setting
from .policies.base import SENTENCE_END
from .stream import count_units

_ENDS = re.compile(rf"[{re.escape(SENTENCE_END)}][\"'”’)\]）」』]*$")
_RUNS = re.compile(r"\S+|\s+")
_TAIL = 64  # characters of a growing word kept: only its end can end a sentence


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
    substring (inner spaces included), stripped. The whole text through `SentenceCutter`, so a
    source cut at once and one cut as it arrives get the same sentences."""
    out: list[tuple[int, str]] = []
    offset = 0
    for piece, _ in SentenceCutter(unit, max_units).cut(text + " "):  # the space completes the last word
        sentence = " ".join(piece.split()) if unit == "word" else piece.strip()
        if sentence:
            out.append((offset, sentence))
            offset += count_units(sentence, unit)
    return out


class SentenceCutter:
    """`split_sentences` for a source that arrives in pieces: `cut(text)` returns the text of each
    piece with whether its sentence ends after it, so pieces fed in order close the same sentences
    `split_sentences` cuts from the whole text. A word counts once whitespace follows it (the
    whitespace that completes a sentence's last word closes that sentence, whatever comes after
    it belongs to the next); a character unit counts at once. Only the unit counts and the end of
    a growing word are kept, so an unbounded stream takes bounded memory."""

    def __init__(self, unit: str, max_units: int | None = None):
        if unit not in ("word", "char"):
            raise ValueError(f"unknown unit {unit!r}")
        if max_units is not None and max_units < 1:
            raise ValueError("a sentence needs room for at least one unit")
        self.unit, self.max_units = unit, max_units
        self.units = 0  # complete units of the open sentence
        self._word = ""  # the end of the word still growing (word units)

    def cut(self, text: str) -> list[tuple[str, bool]]:
        """`text` as consecutive pieces (text, its sentence ends after it); only the last may not end one."""
        out: list[tuple[str, bool]] = []
        start = 0
        if self.unit == "char":
            for i, ch in enumerate(text):
                if ch.isspace():
                    continue
                self.units += 1
                if closes_sentence(ch, self.units, self.max_units):
                    out.append((text[start : i + 1], True))
                    start, self.units = i + 1, 0
        else:
            for run in _RUNS.finditer(text):
                if not run.group()[0].isspace():
                    self._word = (self._word + run.group())[-_TAIL:]
                    continue
                if self._word:  # whitespace completes the word
                    word, self._word = self._word, ""
                    self.units += 1
                    if closes_sentence(word, self.units, self.max_units):
                        out.append((text[start : run.start() + 1], True))
                        start, self.units = run.start() + 1, 0
        if start < len(text):
            out.append((text[start:], False))
        return out

    def reset(self) -> None:
        """The source ended (its open sentence with it): the next text starts a new sentence."""
        self.units, self._word = 0, ""


__all__ = ["SentenceCutter", "SentenceSettings", "closes_sentence", "ends_sentence", "split_sentences"]
