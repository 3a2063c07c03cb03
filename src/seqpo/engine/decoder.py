"""What every decoding mode shares: the model and its sampling settings, the started steps, and how
a step picks its tokens (greedy, or sampled with its log-probs for a rollout's update) and ends (a
line end, EOS or the request's stop rule). Each mode holds its episodes its own way on top of it:
`reencode` and `cached` directly, `append` and `slots` through the row cache (`rows.py`)."""

from __future__ import annotations

import time

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from ..generation import Generator, forbid_line_end, stop_reached
from ..model_steps import ModelSteps
from ..requests import Ahead, Completion, Request
from ..slots import additive, sliding_window
from .episode import Entry, EpisodeRow, _StepJob


class Decoder(ModelSteps):
    """The shared half of every engine; a mode fills in its episodes (`open`, `read`, `write`,
    `close`, `fork`), how a step starts (`_step_job`) and runs (`advance`). Build an engine with
    `seqpo.engine.engine_for` / `make_engine`."""

    def __init__(self, model, tokenizer, slot: int = 16, batch_size: int = 8, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, few_shot: bool = True, lookahead: int = 0,
                 write_ahead: bool = False, chat=None):
        if chat is not None and not self.takes_chat_template:
            raise ValueError(f"{type(self).__name__} decoding has its own prompt format: no chat template")
        self.model, self.tokenizer, self.slot = model, tokenizer, slot
        self.few_shot = few_shot
        self.lookahead = lookahead if self.incremental else 0  # reads taken ahead per forward pass
        self.write_ahead = write_ahead and self.incremental  # run the next read while a segment decodes
        self.do_sample = do_sample
        self.generator = Generator(model, tokenizer, batch_size, do_sample, temperature, top_p, chat)
        warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
        self.warpers = LogitsProcessorList(warpers)
        self.window = sliding_window(model)
        self.rows: list[EpisodeRow] = []  # the open episodes
        self.jobs: dict[EpisodeRow, _StepJob] = {}  # started steps, in start order
        self._tokens = 0

    @property
    def tokens_processed(self) -> int:
        """Tokens run through the model (prompt + generated), dead padding not counted."""
        return self._tokens + self.generator.tokens_processed

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def _additive(self, ok: torch.Tensor) -> torch.Tensor:
        return additive(ok, next(self.model.parameters()).dtype).to(self.device)

    # -- steps ------------------------------------------------------------------------------------
    def start(self, row: EpisodeRow, request: Request, ahead: list[Ahead] | None = None,
              then: list[tuple[str, bool]] | None = None) -> None:
        """Begin a model step for `row`; it runs in the next `advance` calls, batched with the steps
        of every other started episode, whatever point those have reached.

        `ahead` (later reads: look-ahead) and `then` (the reads after this step's: write-ahead) let
        incremental modes decide reads early; see `seqpo.engine.early`. With `ahead`, the step's
        result has one entry per read taken: its Completion, None where the policy waited without
        the model.
        """
        if row in self.jobs:
            raise RuntimeError("this episode already has a step running")
        t0 = time.perf_counter()
        self.jobs[row] = self._step_job(row, request, ahead or [], then or [], t0)

    def _step_job(self, row: EpisodeRow, request: Request, ahead: list[Ahead], then: list[tuple[str, bool]],
                  t0: float) -> _StepJob:
        """A started step of `row`: the tokens it starts with and its decision points."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """Some started step has not finished yet."""
        return bool(self.jobs)

    def _entry(self, row: EpisodeRow, job: _StepJob, tok: int) -> Entry:
        """The cache entry of the token just generated, run at the next pass."""
        raise NotImplementedError

    def _next(self, s: EpisodeRow, job: _StepJob, tok: int, logp: float | None = None) -> bool:
        """Record a generated token; True if the step ends with it (else it runs at the next pass)."""
        job.ids.append(tok)
        if logp is not None:
            job.logps.append(logp)
        text = self.tokenizer.decode(job.ids, skip_special_tokens=True)
        if tok == self.tokenizer.eos_token_id or stop_reached(text, len(job.ids), job.points[job.taken][1]):
            return True
        job.entry = self._entry(s, job, tok)
        return False

    def _finish(self, s: EpisodeRow, job: _StepJob) -> list[Completion | None]:
        """A step's entries, one per read taken; the token that ended it was not run (it comes back
        as pending when the written segment keeps it)."""
        del self.jobs[s]
        eos = self.tokenizer.eos_token_id
        text = self.tokenizer.decode(job.ids, skip_special_tokens=True)
        s.gen_ids = job.ids[: len(s.gen_cols)]
        elapsed = (time.perf_counter() - job.t0) * 1000
        last = Completion(text.split("\n")[0], len(job.ids), elapsed, "\n" in text or eos in job.ids, job.ids,
                          prompt_ids=job.prompt, logprobs=job.logps if len(job.logps) == len(job.ids) else None)
        entries: list[Completion | None] = []
        waits = iter(job.waits)
        by_read = {p[2]: j for j, p in enumerate(job.points[: job.taken + 1])}
        for k in range(job.points[job.taken][2] + 1):
            if k not in by_read:
                entries.append(None)  # the policy waited there without the model
            elif by_read[k] == job.taken:
                entries.append(last)
            else:
                entries.append(Completion("", 1, 0.0, True, [next(waits)]))
        return entries

    def _first_token(self, logits: torch.Tensor, req: Request) -> tuple[int, float | None]:
        """A step's first token from one row of logits [V], under the request's must_write (and
        its log-prob when sampling)."""
        scores = forbid_line_end(logits[None], [0] if req.must_write else [], self.generator.line_end)
        tok, logp = self._pick_logp(scores)
        return int(tok[0]), logp[0] if logp else None

    def _pick_logp(self, logits: torch.Tensor) -> tuple[torch.Tensor, list[float] | None]:
        """Next tokens from rows of scores [B, V]; when sampling, also each token's log-prob under
        the distribution it was drawn from (temperature/top-p applied: what a rollout's update
        compares against)."""
        if not self.do_sample:
            return logits.argmax(-1), None
        logp = torch.log_softmax(self.warpers(None, logits.float()), -1)
        picked = torch.multinomial(logp.exp(), 1)[:, 0]
        return picked, logp.gather(1, picked[:, None])[:, 0].tolist()
