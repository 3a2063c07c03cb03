"""What a test may assert about what Whisper heard: a word error rate against the words that were
spoken, below a stated bound, never the exact words.

Whisper tiny.en's words change with the CPU's instruction set, the thread count and the load (one
machine hears "I would like a cup and tea." for a clip another hears as "cup of tea"): a test that
pins them passes on one machine and fails on the next. The bounds say how many words of a short
espeak-ng sentence may come out wrong while the speech still clearly reached the transcript; a
missing or garbled sentence (WER near 1) still fails.
"""

from __future__ import annotations

import numpy as np

from seqpo.metrics.wer import wer_words, word_errors

# Two clips the speech tests speak, split at their sentence ends.
THANKS = "Thank you very much."  # 4 words
TEA = "I would like a cup of tea."  # 7 words
CLIP = f"{THANKS} {TEA}"
TEA_TAIL = "a cup of tea"  # TEA's last words, which come right before the end of a trimmed CLIP
# One sentence whose commas espeak-ng pauses at (~180 ms) and where tiny.en puts a period mid-clause
# ("yesterday. Almost every member"): no speaker's sentence ends before its last word.
COMMA_CLAUSE = ("The city council approved the new budget yesterday, although several members, who had opposed "
                "the plan for months, voted against it.")

# A talk of 12 sentences (~40 s; espeak-ng pauses 320-380 ms after each, and never inside them).
# tiny.en's streaming transcript of it drops a period or more (its prompt, the words before, soon
# has none), so only the pause shows where some of its sentences end.
TALK = ("The new library opened its doors on Monday morning. Hundreds of readers waited outside in the rain. "
        "The mayor thanked the builders for their hard work. Children were given free books at the entrance. "
        "Everyone agreed that the town had waited far too long for it. The old building had closed ten years ago "
        "after a fire in the basement. Since then the nearest library was an hour away by bus. Teachers said that "
        "many pupils had never held a library card. The new one has a music room and a small theatre on the top "
        "floor. It will stay open until nine in the evening on weekdays. On Sundays volunteers will read stories "
        "to the youngest visitors. The builders finished the work two months ahead of schedule.")
TALK_SENTENCES = 12

SENTENCE_WER = 0.5  # THANKS alone (and TEA_TAIL: "a cup and tea" is 1 of 4 wrong, a lost tail 4 of 4): at most 2 of its 4 words wrong (tiny.en hears it whole everywhere seen)
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


def assert_tail_heard(heard: str, spoken_tail: str, context: object = "") -> None:
    """The words said last reached the transcript: its last words (as many as `spoken_tail` has)
    within SENTENCE_WER of them."""
    n = len(wer_words(spoken_tail))
    assert_heard(" ".join(wer_words(heard)[-n:]), spoken_tail, SENTENCE_WER, context)


def trimmed(samples):
    """Speech with its trailing silence cut: the last word ends where the audio does."""
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    return samples[: loud[-1] + 1]


def assert_second_sentence(heard: str, context: object = "") -> None:
    """TEA was heard as a sentence of its own: a property, not its words (see CLIP_WER)."""
    assert len(wer_words(heard)) >= 3, f"second sentence {heard!r} has fewer than 3 words {context}"[:4000]
