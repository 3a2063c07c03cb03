"""What the engine keeps per episode and per step: an episode's row (`EpisodeRow`, the driver's handle
on it; in append/slots its row of the batched cache) and a started step (`_StepJob`). Free of torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import SeqpoError
from ..requests import Request
from ..languages import LanguagePair

if TYPE_CHECKING:  # the engine's modules hold tensors; this record only names their type
    import torch

    from .transcript import Transcript

Entry = tuple[int, int, int, int]  # one cache entry: (token id, kind, position, vis); see `seqpo.slots`


class SourceRegionFullError(SeqpoError):
    """More source tokens arrived than the slots region reserved for the sentence."""


@dataclass(eq=False)  # a handle: two episodes in the same state are still two rows
class EpisodeRow:
    """One episode on the model side: the driver's handle on it, and in append/slots its row of the
    engine's batched cache."""

    pair: LanguagePair
    n_read: int = 0
    pending: list[Entry] = field(default_factory=list)  # not yet run
    next_pos: int = 0  # append: next transcript position; slots: next source position
    gen_cols: list[int] = field(default_factory=list)  # cache columns of this step's generated tokens
    gen_ids: list[int] = field(default_factory=list)
    spec: tuple | None = None  # write-ahead: (entries, cache columns, logits) of the next step's start
    transcript: Transcript | None = None  # what the row ran, when the engine records it (training)

    def move_columns(self, moved: list[int]) -> None:
        """The cache columns this row remembers, after compaction moved column c to moved[c]."""
        self.gen_cols = [moved[c] for c in self.gen_cols]
        if self.transcript is not None:
            self.transcript.move_columns(moved)
        if self.spec is not None:
            self.spec = (self.spec[0], [moved[c] for c in self.spec[1]], self.spec[2])


@dataclass(eq=False)
class _StepJob:
    """A started model step of one episode."""

    request: Request
    block: list[Entry]  # tokens the step starts with (pending + look-ahead reads)
    points: list[tuple[int, Request, int, int]]  # decisions: block index, request, reads ahead, source end
    t0: float
    taken: int = 0  # the point decoded from
    waits: list[int] = field(default_factory=list)  # first tokens of the points taken as waits
    ids: list[int] = field(default_factory=list)  # generated so far
    entry: Entry | None = None  # the token to run next (None: the block is not run yet)
    decided: torch.Tensor | None = None  # logits of the first token, computed by write-ahead
    then: list[tuple[str, bool]] = field(default_factory=list)  # write-ahead: the reads after the current one
    logps: list[float] = field(default_factory=list)  # sampling: log-prob of each generated token
    prompt: list[int] | None = None  # cached: the step's whole prompt ids
