"""Re-encode decoding: each step's request (cached few-shot prefix + the whole step prompt) goes to
`Generator.complete`, as the policies build it. The baseline and reference output."""

from __future__ import annotations

import copy

from ..languages import LanguagePair
from ..requests import Ahead, Completion, Request
from .decoder import Decoder
from .episode import EpisodeRow, _StepJob


class ReencodeEngine(Decoder):
    """`ModelSteps` over a `Generator`: an episode holds no cache, so reads and writes cost nothing
    and each step runs its whole prompt."""

    takes_chat_template = True

    @classmethod
    def over(cls, generator) -> "ReencodeEngine":
        """The re-encode engine over an existing Generator (its prefix cache and settings)."""
        engine = cls(generator.model, generator.tokenizer, batch_size=generator.batch_size,
                     do_sample=generator.do_sample, temperature=generator.temperature, top_p=generator.top_p)
        engine.generator = generator
        return engine

    def open(self, pair: LanguagePair, reads: list[str] | None = None,
             max_source_tokens: int | None = None) -> EpisodeRow:
        return EpisodeRow(pair)

    def read(self, row: EpisodeRow, chunk: str, last: bool = False) -> None:
        return  # each request carries its whole prompt

    def write(self, row: EpisodeRow, segment: str) -> None:
        return

    def close(self, row: EpisodeRow) -> None:
        self.jobs.pop(row, None)
        row.spec = None

    def fork(self, row: EpisodeRow, n: int) -> list[EpisodeRow]:
        return [row] + [copy.deepcopy(row) for _ in range(n - 1)]

    def _step_job(self, row: EpisodeRow, request: Request, ahead: list[Ahead], then: list[tuple[str, bool]],
                  t0: float) -> _StepJob:
        return _StepJob(request, [], [(0, request, 0, 0)], t0)

    def advance(self) -> list[tuple[EpisodeRow, list[Completion | None]]]:
        """One `Generator.complete` call: every started request decoded in full."""
        jobs, self.jobs = self.jobs, {}
        done = self.generator.complete([job.request for job in jobs.values()])
        return [(s, [c]) for s, c in zip(jobs, done)]
