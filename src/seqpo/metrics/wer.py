"""Word error rate of ASR output: word-level Levenshtein distance over reference words, after
lower-casing and removing punctuation (Whisper writes punctuation and case; espeak-ng speaks
neither). For Chinese and Japanese (`unit="char"`, the languages' latency unit) it is the
character error rate: their text has no spaces between words."""

from __future__ import annotations

import re
from collections.abc import Sequence


def wer_words(text: str, unit: str = "word") -> list[str]:
    # typographic apostrophes (common in WMT text) count as ASCII ones; "I've" = "ive" either way
    text = text.lower().replace("\u2019", "'")
    words = re.sub(r"[^\w\s']", " ", text).replace("'", "").split()
    return [c for w in words for c in w] if unit == "char" else words


def word_errors(hypothesis: str, reference: str, unit: str = "word") -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words), or characters for `unit="char"`."""
    hyp, ref = wer_words(hypothesis, unit), wer_words(reference, unit)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1], len(ref)


def corpus_wer(hypotheses: Sequence[str], references: Sequence[str], unit: str = "word") -> float:
    """Total word errors / total reference words, in percent (characters for `unit="char"`: CER)."""
    errors = words = 0
    for h, r in zip(hypotheses, references):
        e, n = word_errors(h, r, unit)
        errors, words = errors + e, words + n
    return 100.0 * errors / max(1, words)
