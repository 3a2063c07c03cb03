"""What a test may assert about what Whisper heard: a word error rate against the words that were
spoken, below a stated bound, never the exact words.

Whisper tiny.en's words change with the CPU's instruction set, the thread count and the load (one
machine hears "I would like a cup and tea." for a clip another hears as "cup of tea"): a test that
pins them passes on one machine and fails on the next. The bounds say how many words of a short
espeak-ng sentence may come out wrong while the speech still clearly reached the transcript; a
missing or garbled sentence (WER near 1) still fails.
"""

from __future__ import annotations

from seqpo.metrics.wer import wer_words, word_errors

# Two clips the speech tests speak, split at their sentence ends.
THANKS = "Thank you very much."  # 4 words
TEA = "I would like a cup of tea."  # 7 words
CLIP = f"{THANKS} {TEA}"

SENTENCE_WER = 0.5  # THANKS alone: at most 2 of its 4 words wrong (tiny.en hears it whole everywhere seen)
# The whole clip. tiny.en garbles espeak-ng's second sentence in ways that vary by machine and path
# ("I will like a cup and tea." 2/11 wrong, streaming; "I will die, Kakarpan T." 6/11, offline; "I will like
# Kakarabam T." under load): 0.6 allows that, and still fails when the second sentence is lost (7/11 = 0.64).
CLIP_WER = 0.6


def wer(heard: str, spoken: str) -> float:
    """Word error rate of `heard` against `spoken` (the project's WER: case and punctuation ignored)."""
    errors, words = word_errors(heard, spoken)
    return errors / max(1, words)


def assert_heard(heard: str, spoken: str, bound: float, context: object = "") -> None:
    rate = wer(heard, spoken)
    assert rate <= bound, f"WER {rate:.2f} > {bound}: heard {heard!r} for {spoken!r} {context}"[:4000]


def assert_clip_heard(heard: str, context: object = "") -> None:
    """CLIP reached the transcript: the whole within CLIP_WER, and its first sentence within
    SENTENCE_WER (so losing THANKS, 4/11 = 0.36 for the whole, fails too)."""
    assert_heard(heard, CLIP, CLIP_WER, context)
    assert_heard(" ".join(wer_words(heard)[:4]), THANKS, SENTENCE_WER, context)


def assert_second_sentence(heard: str, context: object = "") -> None:
    """TEA was heard as a sentence of its own: a property, not its words (see CLIP_WER)."""
    assert len(wer_words(heard)) >= 3, f"second sentence {heard!r} has fewer than 3 words {context}"[:4000]
