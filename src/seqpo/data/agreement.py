"""Offline schedule builder by local agreement (Liu et al., 2020; Polák et al., 2022).

Method, per sentence: translate every source prefix x_1..t and the full source with the same model
(greedy, the offline prompt). After read t, the part of the full translation that the prefix
translation already agrees with is safe: a_t = length of the longest common prefix, in target
units, of translate(x_1..t) and translate(x), made non-decreasing over t. A model cannot know the
reference word order, so we transfer the *fraction* of the full translation that is safe to the
reference: after read t, floor(a_t / |translate(x)| * |reference|) reference units may be written
(all of it after the last read). Where word order differs (a German verb, a Chinese time phrase)
prefix and full translations disagree, the fraction stalls, and the examples wait.
"""

from __future__ import annotations

import math

from ..generation import Generator
from ..languages import LanguagePair
from ..policies.base import State, finish_request, finished_text
from ..stream import chunk_source, common_prefix, count_units, join_reads, split_units


def schedule_from_translations(prefix_translations: list[str], reference: str, pair: LanguagePair) -> list[int]:
    """The schedule given the translation of each source prefix (the last one = whole source)."""
    unit = pair.target_unit
    full = split_units(prefix_translations[-1], unit)
    total = count_units(reference, unit)
    schedule, best = [], 0
    for hyp in prefix_translations:
        best = max(best, common_prefix(split_units(hyp, unit), full))
        schedule.append(math.floor(best / len(full) * total) if full else 0)
    schedule[-1] = total
    return schedule


def agreement_schedules(sentences: list[tuple[str, str]], pair: LanguagePair, chunk: int,
                        generator: Generator) -> list[list[int]]:
    """Schedules for (source, reference) pairs; all prefix translations run as one batched job."""
    states, owners = [], []
    for i, (source, _) in enumerate(sentences):
        reads = chunk_source(source, pair.source_unit, chunk)
        for t in range(1, len(reads) + 1):
            prefix = join_reads(reads[:t], pair.source_unit)
            states.append(State(pair, prefix, count_units(prefix, pair.source_unit), True, "", t))
            owners.append(i)
    completions = generator.complete([finish_request(s) for s in states]) if states else []
    translations: list[list[str]] = [[] for _ in sentences]
    for owner, state, completion in zip(owners, states, completions):
        translations[owner].append(finished_text(state, completion))
    return [schedule_from_translations(t, ref, pair) if t else []
            for t, (_, ref) in zip(translations, sentences)]
