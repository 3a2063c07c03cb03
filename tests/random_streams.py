"""Random talks for checking stream latency metrics against their reference implementations
(simulstream's StreamLAAL, OmniSTEval's LongYAAL)."""

from __future__ import annotations

import random

from seqpo.metrics.stream_latency import StreamSentence

UNITS = {"word": ("a b c The the cat sat on mat . ,".split(), " ".join),
         "char": (list("今天她看起很好我们一起去公园散步吧。，"), "".join)}


def random_stream(rng: random.Random, unit: str, fractions: tuple[float, ...] = (0.0,)
                  ) -> tuple[str, list[float], list[StreamSentence]]:
    """One talk of 1-5 reference sentences and a hypothesis that drops or garbles some of their
    units, each written a little after its sentence starts (delays never decrease). A sentence's
    length is a whole number of units plus one of `fractions` (a speech-like length in seconds;
    only drawn when there is a choice). Returns (hypothesis, delays, sentences)."""
    vocab, join = UNITS[unit]
    refs = [[rng.choice(vocab) for _ in range(rng.randint(1, 8))] for _ in range(rng.randint(1, 5))]
    lengths = [rng.randint(1, 12) + (rng.choice(fractions) if len(fractions) > 1 else fractions[0]) for _ in refs]
    offsets = [sum(lengths[:k]) for k in range(len(refs))]
    hyp, delays = [], []
    for k, ref in enumerate(refs):
        for w in ref:
            if rng.random() < 0.15:
                continue
            hyp.append(w if rng.random() > 0.15 else rng.choice(vocab))
            delays.append(float(max(delays[-1] if delays else 0, offsets[k] + rng.randint(0, int(lengths[k]) + 2))))
    return join(hyp), delays, [StreamSentence(join(r), o, n) for r, o, n in zip(refs, offsets, lengths)]
