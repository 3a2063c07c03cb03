"""Append decoding: one running transcript per episode (`prompts.conversation_*`): dialogue-style
SimulMT, the baseline ExPosST compares against and the cache reuse of HPO.

Each read appends `English: chunk\\nGerman:`, each step appends ` segment\\n` (or `\\n` for a
wait). The cache is only extended, so a step runs only its new tokens; the result equals
re-encoding the transcript. Positions are contiguous over the live transcript: an entry's position
is handed out when it runs (`RowCacheEngine._forward`), so rolled-back tokens leave no gap.
"""

from __future__ import annotations

from ..languages import LanguagePair
from ..prompts import conversation_prefix, conversation_read, conversation_write
from ..slots import PREFIX
from .rows import RowCacheEngine
from .episode import Entry, EpisodeRow, _StepJob


class AppendEngine(RowCacheEngine):
    """The row cache over conversation transcripts; see the module docstring."""


    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._newline_ids = self._ids(conversation_write(""))  # a line's end in the transcript (all a wait adds)

    def _prefix_ids(self, pair: LanguagePair) -> list[int]:
        return self.tokenizer((conversation_prefix(pair) if self.few_shot else "")).input_ids

    def _read_ids(self, pair: LanguagePair, chunk: str, last: bool, first: bool = False) -> list[int]:
        """A read's turn: `English: chunk\\nGerman:`."""
        return self._ids(conversation_read(pair, chunk, last))

    def _read_entries(self, row: EpisodeRow, chunk: str, last: bool) -> list[Entry]:
        return [(t, PREFIX, -1, 0) for t in self._read_ids(row.pair, chunk, last)]

    def _segment_ids(self, row: EpisodeRow, segment: str) -> list[int]:
        return self._ids(conversation_write(segment))

    def _commit(self, row: EpisodeRow, want: list[int], keep: int) -> list[int]:
        row.next_pos -= len(row.gen_ids) - keep
        row.pending += [(t, PREFIX, -1, 0) for t in want[keep:]]
        return row.gen_cols[keep:]

    def _entry(self, row: EpisodeRow, job: _StepJob, tok: int) -> Entry:
        return (tok, PREFIX, -1, 0)

    # -- early decisions --------------------------------------------------------------------------
    def _ahead_entries(self, row: EpisodeRow, piece: list[int], src: int, vis: int,
                       asks: bool) -> tuple[list[Entry], int]:
        return [(t, PREFIX, -1, 0) for t in self._newline_ids + piece], src

    def _took(self, row: EpisodeRow, block: list[Entry], points: list, j: int, cols: list[int]) -> list[int]:
        row.next_pos -= len(block) - points[j][0] - 1  # positions were handed out for the whole block
        return []

    def _follow_entries(self, row: EpisodeRow, job: _StepJob, piece: list[int]) -> list[Entry]:
        return [(t, PREFIX, row.next_pos + 1 + i, 0) for i, t in enumerate(self._newline_ids + piece)]

    def _matches(self, row: EpisodeRow, base: list[Entry], spec: list[Entry]) -> bool:
        """Same ids and kinds, in the next transcript positions."""
        if len(base) != len(spec):
            return False
        return all(b[:2] == s[:2] and s[2] == row.next_pos + i for i, (b, s) in enumerate(zip(base, spec)))

    def _reuse(self, row: EpisodeRow, spec: tuple, n: int) -> None:
        row.next_pos += n
