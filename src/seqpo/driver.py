"""The one driver of a streaming episode (SeqPO-SiMT, arXiv 2505.20622, sec. 3.1): a source arrives
read by read, the policy waits or writes at each read, and every step is recorded.

`EpisodeRun` is the only code that steps an episode: it counts source units as text arrives (`feed`,
`end`), builds the policy's `State` for each due read (`next_step`), tells the model side every read
and every written segment, and records each `Step` (`record`). It knows nothing of where the
source comes from (a file line fed whole, a WebSocket, the words of a speech recogniser) nor of how
model steps run. Those run on a `ModelSteps` (`seqpo.model_steps`, the whole contract): an engine
of `seqpo.engine` (every decoding mode), which batches the steps of many episodes continuously and,
for a source known in advance, decides later reads early (look-ahead, write-ahead), or
`CompleterSteps` around anything with `complete(requests)` (a `Generator`, vLLM, the live engines of
`seqpo.live_engines`, the server's worker seen from a speech thread).

Two pumps carry requests between runs and model steps: `drive` (synchronous, many runs in
lockstep: eval, rollouts, translate, speech, SimulEval) and `step_async` (one run of a server
session, awaiting the server's worker). Neither decides anything about an episode.

Reads: each read is `chunk` source units (`stream.chunk_source` splits a whole line the same way);
live text counts a word once whitespace follows it. When the source ends, the remaining units are
read, the last step with `source_finished=True`; when the end arrives after every unit was read,
one extra finishing step (no new read) lets the policy complete the sentence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .errors import SeqpoError
from .languages import LanguagePair
from .model_steps import ModelSteps
from .policies.base import Policy, State
from .requests import Ahead, Completion, Request
from .stream import Episode, Step


class SentenceTooLongError(SeqpoError):
    """A live sentence grew past the allowed number of source units."""


@dataclass
class PlannedStep:
    """A read that is due: its state, and the model request (None: wait without the model)."""

    state: State
    request: Request | None
    chunk: str = ""  # the source text newly read at this step ("" for a finishing step)


_SENTENCE_MARKS = (".", "?", "!", "…")
_CLOSERS = "\"'»)]”’"


@dataclass(eq=False)
class EpisodeRun:
    """One episode being streamed: `feed` source text, `end` it, step with `next_step`/`record`.

    `model` and `row` (optional) are the model side every read and written segment is told to;
    `key` is the caller's name for the episode (a line number, a rollout group).
    """

    pair: LanguagePair
    policy: Policy
    chunk: int = 1
    max_units: int | None = None
    max_chars: int | None = None  # text without spaces (or only spaces) adds no units, but memory
    key: object = None
    model: ModelSteps | None = None
    row: object = None
    text: str = ""  # everything received so far, as received
    ended: bool = False
    read_units: int = 0  # units the policy has seen
    episode: Episode = field(init=False)
    # Units are counted as text arrives, never by re-splitting the whole text (a long sentence fed
    # in small pieces would cost quadratic time): words complete so far (a word is complete once
    # whitespace follows it) and the word still growing; for character sources, the end offset in
    # `text` of each non-space character and the offset of the first one.
    _words: list[str] = field(default_factory=list, repr=False)
    _partial: str = ""
    _char_ends: list[int] = field(default_factory=list, repr=False)
    _start: int = -1
    _open: PlannedStep | None = None  # a step waiting for its completion
    ahead: int = 1  # look-ahead reads offered at the next step (grows while the episode keeps waiting)

    def __post_init__(self):
        if self.chunk < 1:
            raise ValueError("chunk size must be at least 1")
        self.episode = Episode(source="", source_unit=self.pair.source_unit, target_unit=self.pair.target_unit)

    @classmethod
    def whole(cls, pair: LanguagePair, policy: Policy, source: str, chunk: int = 1, **kwargs) -> "EpisodeRun":
        """A source known in full (a file line, a POST body): fed and ended at once."""
        run = cls(pair, policy, chunk, **kwargs)
        run.feed(source)
        run.end()
        return run

    # -- the source side ----------------------------------------------------------------------
    def feed(self, text: str) -> None:
        if self.ended:
            raise RuntimeError("this sentence has ended; start a new episode")
        if self.max_chars is not None and len(self.text) + len(text) > self.max_chars:
            raise SentenceTooLongError(f"sentence longer than {self.max_chars} characters; send an end sooner")
        offset = len(self.text)
        self.text += text
        if self.pair.source_unit == "char":
            for i, ch in enumerate(text, offset):
                if not ch.isspace():
                    self._start = i if self._start < 0 else self._start
                    self._char_ends.append(i + 1)
            units = len(self._char_ends)
        else:
            pieces = (self._partial + text).split()
            if pieces and not text[-1:].isspace():
                self._partial = pieces.pop()
            else:
                self._partial = ""
            self._words += pieces
            units = len(self._words) + bool(self._partial)
        if self.max_units is not None and units > self.max_units:
            raise SentenceTooLongError(
                f"sentence longer than {self.max_units} {self.pair.source_unit}s; send an end sooner")

    def end(self, mark: str | None = None) -> None:
        """The source is complete. `mark` (word sources): a sentence-final mark to put on the last
        word where it has none (a trailing , ; : replaced; closing quotes kept after it): for a
        sentence the caller closed without one (the speech cascade, at a pause), as the prompt
        has no other sign that the source ended (without it the model writes a word or two and
        stops). Words already read keep their count; a read still to come reads the mark."""
        self.ended = True
        if self._partial:
            self._words.append(self._partial)
            self._partial = ""
        if mark and self._words and self.pair.source_unit == "word":
            last = self._words[-1]
            core = last.rstrip(_CLOSERS)
            if not core.endswith(_SENTENCE_MARKS):
                marked = core.rstrip(",;:") + mark + last[len(core):]
                self._words[-1] = marked
                body = self.text.rstrip()
                self.text = body[: len(body) - len(last)] + marked + self.text[len(body):]
        self.episode.source = self.text.strip()

    def complete_units(self) -> int:
        """Source units known to be complete: a trailing word may still grow until whitespace or end."""
        return len(self._char_ends) if self.pair.source_unit == "char" else len(self._words)

    def prefix(self, n: int) -> str:
        """The first n source units, as `stream.chunk_source` reads them (words joined by one space;
        for character sources the original substring, inner spaces kept)."""
        if self.pair.source_unit == "char":
            return self.text[self._start : self._char_ends[n - 1]] if n else ""
        return " ".join(self._words[:n])

    def _read(self, frm: int, n: int) -> str:
        """The source text read when going from `frm` to `n` units."""
        chunk = self.prefix(n)[len(self.prefix(frm)) if frm else 0:]
        return chunk.lstrip() if self.pair.source_unit == "word" else chunk

    def _due(self, frm: int) -> tuple[int, bool] | None:
        """The read after `frm` units: (units after it, whether it finishes), or None if not due."""
        available = self.complete_units()
        if self.ended:
            if available == 0:
                return None
            n = min(available, frm + self.chunk)
            return n, n == available
        if available - frm >= self.chunk:
            return frm + self.chunk, False
        return None

    def remaining_reads(self) -> list[tuple[str, bool]]:
        """The reads still to come, each with whether it is the last (the source must have ended,
        so `_due` cuts them as `next_step` will)."""
        out, frm = [], self.read_units
        while frm < self.complete_units():
            n, last = self._due(frm)
            out.append((self._read(frm, n), last))
            frm = n
        return out

    def _state(self, n: int, finished: bool, steps_ahead: int = 0) -> State:
        """The policy's view after n units: the one place a `State` is built."""
        return State(pair=self.pair, source_prefix=self.prefix(n), read_units=n, source_finished=finished,
                     target=self.episode.prediction, step=len(self.episode.steps) + 1 + steps_ahead)

    # -- the policy side ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The sentence is finished: ended, and its finishing step recorded (or it was empty)."""
        if not self.ended or self._open is not None:
            return False
        return self.complete_units() == 0 or bool(self.episode.steps and self.episode.steps[-1].finished)

    def next_step(self) -> PlannedStep | None:
        """The next due read (consumed now and told to the model side), or None: a step is open, not
        enough source, or done."""
        if self._open is not None or self.done or self._due(self.read_units) is None:
            return None
        return self._take(tell=True)

    def _take(self, tell: bool) -> PlannedStep:
        n, finished = self._due(self.read_units)
        chunk = self._read(self.read_units, n)
        self.read_units = n
        if tell and self.model is not None:
            self.model.read(self.row, chunk, last=finished)
        state = self._state(n, finished)
        self._open = PlannedStep(state, self.policy.plan(state), chunk)
        return self._open

    def plan_ahead(self, limit: int) -> list[Ahead]:
        """The next reads the model side may take in the same pass (look-ahead), planned as if every
        read before them waits (a wait leaves the target, and so the policy's state, unchanged): up
        to `limit` reads, ending at a read that may not wait, never on a read without a model call.
        Only for a source that has ended (its reads are known)."""
        later: list[Ahead] = []
        frm = self.read_units
        for k in range(1, limit + 1):
            due = self._due(frm) if self.ended else None  # a live source's next reads are not known
            if due is None:
                break
            n, finished = due
            state = self._state(n, finished, steps_ahead=k)
            request = self.policy.plan(state)
            later.append(Ahead(self._read(frm, n), finished, request))
            frm = n
            if finished or (request is not None and request.must_write):
                break
        while later and later[-1].request is None:
            later.pop()
        return later

    def record(self, completion: Completion | None, elapsed_ms: float | None = None, tell: bool = True) -> Step:
        """Close the open step with the model's completion (None when the policy asked for none);
        the written segment is told to the model side (`tell`; a read the model side took ahead as
        a wait has already been written there)."""
        planned, self._open = self._open, None
        if planned is None:
            raise RuntimeError("no step is open")
        if (completion is None) != (planned.request is None):
            raise ValueError("a completion is needed exactly when the step made a request")
        state = planned.state
        written = self.policy.segment(state, completion) if completion is not None else ""
        display = None
        if self.policy.retranslates:  # the whole translation now shown (kept when the step waits); nothing appended
            display, written = written if completion is not None else state.target, ""
        if elapsed_ms is None:
            elapsed_ms = completion.elapsed_ms if completion is not None else 0.0
        step = Step(read=state.read_units, written=written, elapsed_ms=elapsed_ms, finished=state.source_finished,
                    chunk=planned.chunk, display=display)
        self.episode.steps.append(step)
        if tell and self.model is not None:
            self.model.write(self.row, step.written)
        return step

    def take_ahead(self) -> PlannedStep:
        """Open the next read as a step without telling the model side: it already took the read in
        the pass of the previous step (look-ahead)."""
        return self._take(tell=False)

StepHook = Callable[[EpisodeRun, Step, Completion | None], None]


def drive(batches: Iterable[list[EpisodeRun]], model: ModelSteps | None, width: int = 8,
          on_step: StepHook | None = None, on_done: Callable[[EpisodeRun], None] | None = None,
          close: bool = True) -> None:
    """Step runs in lockstep until none has a due read, keeping at most `width` runs active (runs
    come in batches that start together: a GRPO group).

    Every run goes through the reads that need no model (waits) until its policy asks for the model
    (a step starts on `model`) or nothing more is due; each `advance` of the model runs one pass over
    every running step, and a run whose step ended takes its next read at once while longer steps go
    on (continuous batching). `on_step` sees every step with its completion (None for a wait),
    `on_done` every finished run. With `close`, a finished run's row is closed on `model`.
    """
    queue = iter(batches)
    active: list[EpisodeRun] = []

    def finish(run: EpisodeRun) -> None:
        active.remove(run)
        if close and model is not None and run.row is not None:
            model.close(run.row)
        if on_done:
            on_done(run)

    def refill() -> None:
        while len(active) < width:
            batch = next(queue, None)
            if batch is None:
                return
            for run in batch:
                active.append(run)
                if run.done:  # an empty source: no steps
                    finish(run)

    def recorded(run: EpisodeRun, step: Step, completion: Completion | None) -> bool:
        """Report a step; True if the run is finished (and then taken out)."""
        if on_step:
            on_step(run, step, completion)
        if run.done:
            finish(run)
            return True
        return False

    refill()
    ready = list(active)  # runs whose next read may be due
    while active:
        for run in ready:
            while (planned := run.next_step()) is not None:
                if planned.request is not None:
                    if model is None:
                        raise RuntimeError(f"policy '{run.policy.name}' needs a model")
                    later = run.plan_ahead(min(run.ahead, model.lookahead)) if model.lookahead else []
                    run.ahead = len(later)
                    then = run.remaining_reads() if model.write_ahead and run.ended else None
                    model.start(run.row, planned.request, later, then)
                    break
                if recorded(run, run.record(None), None):
                    break
        ready = []
        by_row = {id(run.row): run for run in active if run._open is not None}
        for row, taken in (model.advance() if model is not None and model.busy else []):
            run = by_row[id(row)]
            # one entry per read the model side took: every entry but the last is a wait it already
            # read and wrote (look-ahead); the last one is recorded and written here
            for i, completion in enumerate(taken):
                if i:
                    run.take_ahead()
                step = run.record(completion, tell=i == len(taken) - 1)
                if i < len(taken) - 1 and step.written:
                    raise RuntimeError("look-ahead took a read whose step writes")  # cannot happen: waits only
                if recorded(run, step, completion):
                    break
            else:
                # Look-ahead reads cost compute even when not taken: offer one after a write, twice as
                # many as last time after a step that took every offered read as a wait.
                run.ahead = 2 * max(1, run.ahead) if len(taken) > run.ahead and not step.written else 1
                ready.append(run)
        known = len(active)
        refill()
        ready += active[known:]
        if not ready and not (model is not None and model.busy):
            return  # every active run waits for more source (live)


def step_due(run: EpisodeRun) -> Iterator[Step]:
    """Run every step of one live run that is due now (its source may go on) on its own model side
    (`run.model`); yields the steps."""
    steps: list[Step] = []
    drive([[run]], run.model, width=1, on_step=lambda _r, step, _c: steps.append(step), close=False)
    yield from steps


async def step_async(run: EpisodeRun, complete: Callable[[Request], Awaitable[Completion]]
                     ) -> AsyncIterator[Step]:
    """Run every step of one live run that is due now, each model request through `complete` (a
    server session awaiting the shared worker, which batches across sessions); yields the steps."""
    while (planned := run.next_step()) is not None:
        completion = await complete(planned.request) if planned.request is not None else None
        yield run.record(completion)


__all__ = ["EpisodeRun", "PlannedStep", "SentenceTooLongError", "drive", "step_async", "step_due"]
