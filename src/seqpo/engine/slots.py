"""Slots decoding: the SeqPO line format with the source at reserved positions (ExPosST
zero-recompute caching: Shang et al., arXiv 2603.14903; the format is `seqpo.slots`).

Target positions never move when more source arrives, source tokens never see the target, and
visibility comes from per-token tags through an explicit attention mask. The target's last token
is re-fed at every step (seeing the reads so far), so a step starts from it; its earlier copies
become dead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..languages import LanguagePair
from ..prompts import slots_separator
from ..slots import SOURCE, TARGET, prefix_ids, region_size, source_piece_ids, target_piece_ids
from .rows import RowCacheEngine
from .episode import Entry, EpisodeRow, SourceRegionFullError, _StepJob


@dataclass(eq=False)
class SlotsRow(EpisodeRow):
    """An episode's row in slots decoding: `next_pos` is its next source position."""

    region_end: int = 0  # first target position
    last: tuple[int, int] | None = None  # (id, position) of the target's last token, re-fed
    wrote: bool = False  # a target segment was written
    refed_col: int | None = None  # cache column of this step's re-fed last token

    def move_columns(self, moved: list[int]) -> None:
        super().move_columns(moved)
        self.refed_col = None if self.refed_col is None else moved[self.refed_col]


class SlotsEngine(RowCacheEngine):
    """The row cache over the slots format; see the module docstring."""

    reserves_source = True
    row_type = SlotsRow

    def open(self, pair: LanguagePair, reads: list[str] | None = None,
             max_source_tokens: int | None = None) -> SlotsRow:
        if (reads is None) == (max_source_tokens is None):
            raise ValueError("slots decoding opens an episode with either its reads or max_source_tokens")
        return super().open(pair, reads, max_source_tokens)

    def _prefix_ids(self, pair: LanguagePair) -> list[int]:
        return prefix_ids(self.tokenizer, pair, self.few_shot)

    def _opened(self, row: SlotsRow, reads: list[str] | None, max_source_tokens: int | None) -> None:
        n_src = max_source_tokens if reads is None else \
            sum(len(p) for p in source_piece_ids(self.tokenizer, row.pair, reads))
        row.region_end = row.next_pos + region_size(n_src, self.slot)
        line = self._ids(slots_separator(row.pair))
        row.pending = [(t, TARGET, row.region_end + i, 1) for i, t in enumerate(line[:-1])]
        row.last = (line[-1], row.region_end + len(line) - 1)

    def _read_ids(self, pair: LanguagePair, chunk: str, last: bool, first: bool = False) -> list[int]:
        """A read's source piece."""
        return source_piece_ids(self.tokenizer, pair, [chunk] if first else ["", chunk])[-1]

    def _read_entries(self, row: SlotsRow, chunk: str, last: bool) -> list[Entry]:
        piece = self._read_ids(row.pair, chunk, last, first=row.n_read == 1)
        if row.next_pos + len(piece) > row.region_end:
            raise SourceRegionFullError("source longer than its reserved slots region")
        entries = [(t, SOURCE, row.next_pos + i, row.n_read) for i, t in enumerate(piece)]
        row.next_pos += len(piece)
        return entries

    def _segment_ids(self, row: SlotsRow, segment: str) -> list[int]:
        want = target_piece_ids(self.tokenizer, row.pair, segment, first=not row.wrote)
        row.wrote = row.wrote or bool(want)
        return want

    def _commit(self, row: SlotsRow, want: list[int], keep: int) -> list[int]:
        if want and keep == len(want):
            keep -= 1  # the new last token is re-fed at the next step, seeing the next read
        dead = row.gen_cols[keep:]
        if not want and row.refed_col is not None:
            dead.append(row.refed_col)  # a wait: the re-fed copy is superseded by the next one
        if want:
            if row.refed_col is None:  # the step ran no model: the old last token is still pending
                row.pending.append(self._refed(row, row.n_read))
            base = row.last[1] + 1
            row.pending += [(t, TARGET, base + i, row.n_read) for i, t in enumerate(want[keep:-1], keep)]
            row.last = (want[-1], base + len(want) - 1)
        row.refed_col = None
        return dead

    def _refed(self, row: SlotsRow, vis: int) -> Entry:
        """The target's last token, re-fed to see `vis` reads."""
        return (row.last[0], TARGET, row.last[1], vis)

    def _step_tokens(self, row: SlotsRow) -> list[Entry]:
        return list(row.pending) + [self._refed(row, row.n_read)]

    def _started(self, row: SlotsRow, job: _StepJob, cols: list[int]) -> None:
        row.refed_col = cols[job.points[job.taken][0]]

    def _entry(self, row: SlotsRow, job: _StepJob, tok: int) -> Entry:
        return (tok, TARGET, row.last[1] + len(job.ids), row.n_read)

    # -- early decisions --------------------------------------------------------------------------
    def _ahead_entries(self, row: SlotsRow, piece: list[int], src: int, vis: int,
                       asks: bool) -> tuple[list[Entry], int]:
        if src + len(piece) > row.region_end:
            raise SourceRegionFullError("source longer than its reserved slots region")
        entries = [(t, SOURCE, src + i, vis) for i, t in enumerate(piece)]
        if asks:
            entries.append(self._refed(row, vis))
        return entries, src + len(piece)

    def _took(self, row: SlotsRow, block: list[Entry], points: list, j: int, cols: list[int]) -> list[int]:
        row.next_pos = points[j][3]
        return [cols[p[0]] for p in points[:j]]  # the re-fed copies of the reads that waited

    def _follow_entries(self, row: SlotsRow, job: _StepJob, piece: list[int]) -> list[Entry]:
        if row.next_pos + len(piece) > row.region_end:
            return []
        vis = row.n_read + 1
        return [(t, SOURCE, row.next_pos + i, vis) for i, t in enumerate(piece)] + \
               [(job.entry[0], TARGET, job.entry[2], vis)]

    def _matches(self, row: SlotsRow, base: list[Entry], spec: list[Entry]) -> bool:
        """Same ids, kinds, positions and reads seen."""
        return len(base) == len(spec) and base == spec

    def _reuse(self, row: SlotsRow, spec: tuple, n: int) -> None:
        row.refed_col = spec[1][-1]
