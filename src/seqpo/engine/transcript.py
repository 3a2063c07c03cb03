"""An episode's transcript as the row cache ran it (append, slots): the training sequence of
`seqpo train --format append|slots`.

The row records every entry it ran, in run order, with the forward pass it ran in and the pass
after which it was dead (a rolled-back token, a superseded re-fed copy), and every token the engine
sampled for it with the entry whose logits gave it. `tensors` turns that into one sequence: token
ids, the positions the engine used (slots' reserved ones included) and a mask under which each
entry sees exactly what it saw in the cache: the engine's own visibility rule (`slots.visible`),
restricted to the entries alive when it ran. Scored on that sequence, the sampled tokens get the
log-probs they were sampled with, with nothing rebuilt from the text.

Recorded only when the engine is asked to (`RowCacheEngine.record`), without look-ahead and
write-ahead (their early decisions are not recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..slots import visible
from .episode import Entry

ALIVE = 1 << 62  # the pass after which an entry still alive at the end died


@dataclass
class Pick:
    """A sampled token: the transcript entry whose logits gave it, and how it was drawn."""

    column: int
    token: int
    logp: float | None  # under the sampling distribution (temperature applied)
    must_write: bool  # a step's first token under must_write: the line ends were banned


@dataclass
class Transcript:
    entries: list[Entry] = field(default_factory=list)  # (id, kind, position, vis) in run order
    born: list[int] = field(default_factory=list)  # the pass each entry ran in (0: the shared prefix)
    died: list[int] = field(default_factory=list)  # the last pass it was alive in (ALIVE: never died)
    picks: list[Pick] = field(default_factory=list)
    cols: dict[int, int] = field(default_factory=dict)  # cache column -> entry index, live entries only

    def ran(self, entries: list[Entry], cols: list[int], at: int) -> None:
        """`entries` ran in pass `at`, in cache columns `cols`."""
        for entry, col in zip(entries, cols):
            self.cols[col] = len(self.entries)
            self.entries.append(entry)
            self.born.append(at)
            self.died.append(ALIVE)

    def killed(self, cols: list[int], at: int) -> None:
        """The entries in `cols` died after pass `at`."""
        for col in cols:
            i = self.cols.pop(col, None)
            if i is not None:
                self.died[i] = at

    def picked(self, col: int, token: int, logp: float | None, must_write: bool) -> None:
        self.picks.append(Pick(self.cols[col], token, logp, must_write))

    def move_columns(self, moved: list[int]) -> None:
        self.cols = {moved[c]: i for c, i in self.cols.items()}

    @property
    def prefix(self) -> int:
        """Entries of the shared prefix (run before the episode's own, in pass 0)."""
        return sum(1 for b in self.born if b == 0)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token ids [N], positions [N], mask [N, N] bool: query entry may attend to key entry)."""
        ids, kind, pos, vis = torch.tensor(self.entries, dtype=torch.long).T
        born, died = torch.tensor(self.born), torch.tensor(self.died)
        ok = visible(kind, pos, vis, kind, pos, vis)
        # a key ran in the query's pass or before it, and was still alive in that pass
        ok &= (born[None, :] <= born[:, None]) & (died[None, :] >= born[:, None])
        return ids, pos, ok
