"""Partial-translation examples for warm-up SFT (SeqPO-SiMT, arXiv 2505.20622, sec. 3.2).

Every builder answers one question per sentence: after each read, how many reference units may
have been written (a non-decreasing `schedule`, ending at the whole reference). This module turns
a schedule into one example per read by slicing the *reference text itself*, so the segments of a
sentence concatenate to the reference exactly (whitespace included), and writes them resumably.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..languages import LanguagePair
from ..resume import read_complete_jsonl
from ..stream import chunk_source, count_units, join_reads


@dataclass
class PartialExample:
    index: int  # sentence (line) index in the corpus
    step: int  # 1-based read number
    source_prefix: str  # everything read so far
    target_prefix: str  # reference text written before this step
    segment: str  # reference text written at this step ("" = wait)
    final: bool  # the whole source is read: the segment finishes the sentence


def unit_offsets(text: str, unit: str) -> list[int]:
    """offsets[n] = index in `text` just after its n-th unit (offsets[0] = 0)."""
    offsets = [0]
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if unit == "char":
            i += 1
        else:
            while i < n and not text[i].isspace():
                i += 1
        offsets.append(i)
    return offsets


def examples_from_schedule(index: int, source: str, reference: str, pair: LanguagePair, chunk: int,
                           schedule: list[int]) -> list[PartialExample]:
    """One example per read. `schedule[t]` = reference units written after read t+1."""
    reads = chunk_source(source, pair.source_unit, chunk)
    if len(schedule) != len(reads):
        raise ValueError(f"schedule has {len(schedule)} entries for {len(reads)} reads")
    total = count_units(reference, pair.target_unit)
    offsets = unit_offsets(reference, pair.target_unit)
    fixed, best = [], 0
    for t, c in enumerate(schedule):  # monotone, within bounds, complete at the end
        best = max(best, min(max(int(c), 0), total))
        fixed.append(total if t == len(schedule) - 1 else best)
    out, written = [], 0
    for t, c in enumerate(fixed):
        start = offsets[written]
        end = len(reference) if t == len(fixed) - 1 else offsets[c]
        out.append(PartialExample(index, t + 1, join_reads(reads[: t + 1], pair.source_unit),
                                  reference[:start], reference[start:end], t == len(fixed) - 1))
        written = c
    return out


def sentence_end(record: dict) -> bool:
    """A sentence's last line: its final example, or its skip mark."""
    return bool(record.get("final") or record.get("skipped"))


def finished_indices(path: Path) -> set[int]:
    """Sentences already written (their final example, or a skip mark). What a kill mid-write
    leaves of an unfinished sentence (some of its lines, a cut-off line) is truncated away, so
    the sentence is written exactly once when it is redone."""
    return {r["index"] for r in read_complete_jsonl(path, unit_end=sentence_end) if sentence_end(r)}


def append_examples(fh, examples: Iterable[PartialExample]) -> None:
    """All of a sentence's examples in one write, so a sentence is either complete or redone."""
    fh.write("".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in examples))
    fh.flush()
    os.fsync(fh.fileno())


def summarize(path: Path, pair: LanguagePair) -> dict:
    examples = waits = units = 0
    skipped = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("skipped"):
                skipped += 1
                continue
            examples += 1
            n = count_units(rec["segment"], pair.target_unit)
            waits += n == 0
            units += n
    writes = examples - waits
    return {"examples": examples, "wait_fraction": round(waits / max(1, examples), 3),
            "mean_segment_units": round(units / max(1, writes), 2), "skipped_sentences": skipped}
