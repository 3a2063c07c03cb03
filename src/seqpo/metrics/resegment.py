"""Re-segmenting an unsegmented output stream against reference sentences by minimum edit distance
(mWER segmentation, Matusov et al., 2005, "Evaluating machine translation output with automatic
sentence segmentation", IWSLT), as mwerSegmenter / mweralign compute it for simulstream's StreamLAAL.

The hypothesis tokens are split into exactly as many segments as there are reference sentences,
in order, minimising the total Levenshtein distance (unit costs) between each segment and its
sentence. Matching ignores ASCII case, as mwerSegmenter does (it lowercases bytes, so non-ASCII
letters keep their case). Target units are words, or non-space characters for zh/ja
(`seqpo.stream.split_units`); for character targets a run of Latin-1 letters written together
("GPU", "3.5") is aligned as one token, as mweralign's CJ segmenter does, and maps back to its
characters, so a boundary never falls inside such a run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UNIT = {"word": re.compile(r"\S+"), "char": re.compile(r"\S")}
_LATIN_RUN = re.compile(r"[\x00-\xff]+")  # mweralign's is_latin1: code point <= 0xFF


def unit_spans(text: str, unit: str) -> list[tuple[int, int]]:
    """(start, end) character offsets in `text` of each latency unit (`seqpo.stream.split_units`)."""
    if unit not in _UNIT:
        raise ValueError(f"unknown unit {unit!r}")
    return [m.span() for m in _UNIT[unit].finditer(text)]


def alignment_tokens(text: str, unit: str) -> list[tuple[str, int]]:
    """The tokens the segmenter aligns, each with how many latency units it covers.

    Words align as themselves. Characters align one by one, except that a run of Latin-1
    characters with no space inside is one token (mweralign's CJ segmenter): "GPU" in a Chinese
    sentence is one word to match, not three letters."""
    if unit == "word":
        return [(w, 1) for w in text.split()]
    if unit != "char":
        raise ValueError(f"unknown unit {unit!r}")
    tokens: list[tuple[str, int]] = []
    for chunk in text.split():
        pos = 0
        for run in _LATIN_RUN.finditer(chunk):
            tokens += [(c, 1) for c in chunk[pos:run.start()]]
            tokens.append((run.group(), len(run.group())))
            pos = run.end()
        tokens += [(c, 1) for c in chunk[pos:]]
    return tokens


def mwer_boundaries(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> list[int]:
    """Segment ends: hypothesis tokens [ends[s-1], ends[s]) go to reference s (ends[-1] = len(hypothesis)).

    The dynamic programme runs over the references joined into one sequence with an end-of-sentence
    mark after each sentence; a cell keeps its edit cost and where the previous segment ended, and
    passing an end mark at hypothesis position j closes a segment at j at no cost. Ties between
    edits are broken as mwerSegmenter does (deletion, then insertion, then substitution), which
    decides where an extra or missing word at a boundary goes, and its first column counts the end
    marks as cost; both are kept so that segments match simulstream's exactly.
    """
    if not references:
        raise ValueError("mWER segmentation needs at least one reference sentence")
    hyp = [t.translate(_ASCII_LOWER) for t in hypothesis]
    rows: list[str | None] = []  # None = end of a reference sentence
    for sentence in references:
        rows += [t.translate(_ASCII_LOWER) for t in sentence]
        rows.append(None)
    n_rows, n_hyp, n_seg = len(rows), len(hyp), len(references)
    if n_hyp == 0:
        return [0] * n_seg
    # Column j-1 of costs and back-pointers (hypothesis position where the previous segment ended).
    cost = list(range(n_rows + 1))  # mwerSegmenter's column 0 charges the end marks too
    back = [0] * (n_rows + 1)
    ends_at = [[0] * (n_seg + 1)]  # ends_at[j][s]: where segment s-1 ended, if segment s ends at j
    for j in range(1, n_hyp + 1):
        word = hyp[j - 1]
        new_cost, new_back = [j] + [0] * n_rows, [0] * (n_rows + 1)
        column = [0] * (n_seg + 1)
        s = 0
        for i in range(1, n_rows + 1):
            ref = rows[i - 1]
            if ref is None:
                s += 1
                column[s] = new_back[i - 1]
                new_cost[i], new_back[i] = new_cost[i - 1], j
                continue
            sub = cost[i - 1] + (ref != word)
            dele = new_cost[i - 1] + 1
            ins = cost[i] + 1
            if sub < dele and sub < ins:
                new_cost[i], new_back[i] = sub, back[i - 1]
            elif sub < dele or ins < dele:
                new_cost[i], new_back[i] = ins, back[i]
            else:
                new_cost[i], new_back[i] = dele, new_back[i - 1]
        ends_at.append(column)
        cost, back = new_cost, new_back
    ends = [0] * n_seg
    ends[-1] = k = n_hyp
    for s in range(n_seg, 1, -1):
        k = ends_at[k][s]
        ends[s - 2] = k
    return ends


@dataclass
class Segment:
    """The part of the output stream aligned to one reference sentence."""

    text: str  # as the system wrote it (its own spacing), "" if nothing aligned here
    delays: list[float]  # one per latency unit of `text`
    elapsed: list[float] | None = None  # computation-aware delays, when given


def resegment(hypothesis: str, delays: Sequence[float], references: Sequence[str], unit: str,
              elapsed: Sequence[float] | None = None) -> list[Segment]:
    """Split the output of a whole stream, and its per-unit delays, into one segment per reference."""
    spans = unit_spans(hypothesis, unit)
    if len(spans) != len(delays) or (elapsed is not None and len(elapsed) != len(delays)):
        raise ValueError(f"need one delay per {unit} of the hypothesis: {len(spans)} units, {len(delays)} delays"
                         + ("" if elapsed is None else f", {len(elapsed)} elapsed"))
    tokens = alignment_tokens(hypothesis, unit)
    refs = [[t for t, _ in alignment_tokens(r, unit)] for r in references]
    token_ends = mwer_boundaries([t for t, _ in tokens], refs)
    unit_end, cumulative = [0], 0
    for _, n in tokens:
        cumulative += n
        unit_end.append(cumulative)
    segments, start = [], 0
    for end in (unit_end[k] for k in token_ends):
        text = hypothesis[spans[start][0]:spans[end - 1][1]] if end > start else ""
        segments.append(Segment(text, list(delays[start:end]),
                                None if elapsed is None else list(elapsed[start:end])))
        start = end
    return segments
