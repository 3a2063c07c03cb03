"""Early decisions: two exact shortcuts that decide reads in wider forward passes when later reads
are already known (files, eval, rollouts), in the incremental modes (append, slots).

One pass per read is what keeps streaming slower than offline decoding. Look-ahead (`lookahead`
reads placed as if the reads before them waited) makes a run of waits cost one pass; write-ahead
runs the next read while a segment decodes, placed as if the line ended after the token being run,
and reuses it only if what was written and read is exactly that.

Look-ahead (`start(..., ahead)`): each later read rides along in the same forward pass as the
step's own block, placed as if every read before it had waited, so the decisions of several reads
come out of one pass. The engine takes reads up to the first whose first token does not end the
line (or the last), and decodes that one in full. The step's result has one entry per read taken:
its Completion, None where the policy waited without the model. Reads taken as waits are read and
written here; the caller writes only the last entry. The result is what stepping read by read
gives: a decision only depends on the tokens before it (causal masks), the same either way; tokens
after the read taken last are marked dead.

Write-ahead (`start(..., then)`: the reads after this step's, as (chunk, last); needs
`write_ahead`): while the step decodes, each pass also runs the next read placed as if the line
ended after the token being run, so when it does end, the next step's decision is already computed.
The next `start` uses it only if its tokens are exactly what `write` and `read` left pending;
otherwise those cache entries are marked dead.
"""

from __future__ import annotations

import torch

from ..requests import Ahead, Completion, Request
from .episode import Entry, EpisodeRow, _StepJob


class EarlyDecisions:
    """The look-ahead and write-ahead half of the row cache (`rows.RowCacheEngine`). A mode that can decide early
    (`incremental`) places the extra tokens with `_ahead_entries`, `_follow_entries`, `_took`,
    `_matches` and `_reuse`."""

    # -- mode hooks -------------------------------------------------------------------------------
    def _ahead_entries(self, row: EpisodeRow, piece: list[int], src: int, vis: int,
                       asks: bool) -> tuple[list[Entry], int]:
        """A later read's entries as they would follow a wait (`asks`: the policy asks the model
        there); returns them and the source end after the read."""
        raise NotImplementedError

    def _took(self, row: EpisodeRow, block: list[Entry], points: list, j: int, cols: list[int]) -> list[int]:
        """Decision point j was taken: update the row's positions; returns extra dead columns."""
        raise NotImplementedError

    def _follow_entries(self, row: EpisodeRow, job: _StepJob, piece: list[int]) -> list[Entry]:
        """The next read's entries as they would follow if the line ended after `job.entry`."""
        raise NotImplementedError

    def _matches(self, row: EpisodeRow, base: list[Entry], spec: list[Entry]) -> bool:
        """The tokens a step starts with are the ones write-ahead ran."""
        raise NotImplementedError

    def _reuse(self, row: EpisodeRow, spec: tuple, n: int) -> None:
        """The step starts from what write-ahead ran (`n` entries)."""
        raise NotImplementedError

    # -- look-ahead -------------------------------------------------------------------------------
    def _block(self, row: EpisodeRow, req: Request, later: list[Ahead]):
        """A row's tokens for this step: its pending tokens (+ the re-fed last target token in slots),
        then each later read as it would follow waits. Returns the block and its decision points."""
        block = self._step_tokens(row)
        row.pending = []
        src = row.next_pos
        points = [(len(block) - 1, req, 0, src)]
        for k, a in enumerate(later, 1):
            piece = self._read_ids(row.pair, a.chunk, a.last)
            entries, src = self._ahead_entries(row, piece, src, row.n_read + k, a.request is not None)
            block += entries
            if a.request is not None:
                points.append((len(block) - 1, a.request, k, src))
        return block, points

    def _decide(self, row: EpisodeRow, r: int, job: _StepJob, at: torch.Tensor,
                cols: list[int]) -> tuple[int, float | None]:
        """Take a look-ahead step's decisions in order (logits `at`, one per point), up to the first
        that writes; returns its first token (and log-prob)."""
        for j, (_, req, _, _) in enumerate(job.points):
            tok, logp = self._first_token(at[j], req)
            if j == len(job.points) - 1 or tok not in self.generator.line_end or not req.stop_at_newline:
                break
            job.waits.append(tok)
        job.taken = j
        self._take(row, r, job.block, job.points, j, cols)
        return tok, logp

    def _take(self, row: EpisodeRow, r: int, block: list, points: list, j: int, cols: list[int]) -> None:
        """Keep a row's block up to decision point j: later tokens and (slots) the re-fed copies of
        the reads that waited become dead; the reads up to j count as read."""
        end, _, k, _ = points[j]
        dead = cols[end + 1:]
        dead += self._took(row, block, points, j, cols)
        if dead:
            self._kill(r, dead)
        row.n_read += k

    # -- write-ahead ------------------------------------------------------------------------------
    def _follow(self, row: EpisodeRow, job: _StepJob) -> list[Entry]:
        """The next read as it would follow if the line ended after the token run now."""
        after = job.points[job.taken][2]  # reads taken ahead: the next read comes after them
        if not self.write_ahead or after >= len(job.then):
            return []
        return self._follow_entries(row, job, self._read_ids(row.pair, *job.then[after]))

    def _resume(self, row: EpisodeRow, request: Request, then: list[tuple[str, bool]], t0: float) -> _StepJob | None:
        """The step's job if write-ahead already ran its start (else None; what it ran is dead)."""
        spec, row.spec = row.spec, None
        if spec is None:
            return None
        base = self._step_tokens(row)
        if self._matches(row, base, spec[0]):
            row.pending = []
            self._reuse(row, spec, len(base))
            return _StepJob(request, [], [(len(base) - 1, request, 0, row.next_pos)], t0, decided=spec[2], then=then)
        self._kill(self.rows.index(row), spec[1])
        return None

    def _decided(self) -> list[tuple[EpisodeRow, list[Completion | None]]]:
        """First tokens of the steps whose start write-ahead computed; returns those that ended."""
        finished = []
        for s, job in list(self.jobs.items()):
            if job.decided is not None:
                (tok, lp), job.decided = self._first_token(job.decided, job.request), None
                if self._next(s, job, tok, lp):
                    finished.append((s, self._finish(s, job)))
        return finished
