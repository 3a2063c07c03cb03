"""Normalized Erasure: how much displayed output a re-translation system takes back (Arivazhagan et
al., 2020, "Re-translation versus Streaming for Simultaneous Translation", IWSLT; simulstream's
`normalized_erasure` statistic).

At each update the display changes from o_{i-1} to o_i; the units of o_{i-1} after their longest
common prefix are erased. NE = (sum of erased units over all updates) / |final output|. Units are
words, or non-space characters for zh/ja targets (`seqpo.stream.split_units`), so a word whose
last letters change counts as one erased word. A streaming (append-only) policy has NE = 0.

simulstream counts the units of the model tokens each update reports deleted (always a suffix of
the output); from displays alone the least that can have been deleted is what follows the common
prefix, which is Arivazhagan et al.'s definition. The two agree when a system deletes only what it
then changes; a system that deletes and rewrites the same words counts them in simulstream, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..stream import common_prefix, split_units


def erased_units(previous: str, current: str, unit: str) -> int:
    """Units of `previous` that `current` no longer shows: those after their longest common prefix."""
    before = split_units(previous, unit)
    return len(before) - common_prefix(before, split_units(current, unit))


def total_erasure(displays: Sequence[str], unit: str) -> int:
    """Units erased over a sequence of successive displays of one stream (first = first non-empty update)."""
    return sum(erased_units(a, b, unit) for a, b in zip(displays, displays[1:]))


def normalized_erasure(displays: Sequence[str], unit: str) -> float:
    """NE of one stream: erased units over the units of the final display."""
    return corpus_normalized_erasure([displays], unit)


def corpus_normalized_erasure(streams: Sequence[Sequence[str]], unit: str) -> float:
    """NE of several streams, as simulstream pools them: all erased units over all final units."""
    final = sum(len(split_units(d[-1], unit)) for d in streams if d)
    if final == 0:
        raise ValueError("normalized erasure is undefined for an empty final output")
    return sum(total_erasure(d, unit) for d in streams) / final
