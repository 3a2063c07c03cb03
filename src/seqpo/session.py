"""Incremental episodes: one sentence whose source arrives piece by piece (a live speaker, a server
session), driven through the same `Policy`, `State`, `Episode` and `Step` as `seqpo.simulate`.

`simulate.run_episodes` knows the whole source in advance, so it knows which read is the last one.
Live, a read is only known to be the last when the speaker says the sentence ended; text is only
counted once a word is complete (followed by whitespace, or at the end). Each read of `chunk` units
is one policy step (SeqPO-SiMT, arXiv 2505.20622, sec. 3.1); at the end the remaining units are
read, the last step with `source_finished=True`. When the end arrives after every unit was already
read, one extra finishing step (no new read) lets the policy complete the sentence.

This module owns no model and no clock: the caller asks for the next `State`, sends the policy's
request wherever it runs models (a batched worker, a plain Generator) and records the completion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SeqpoError
from .generation import Generator
from .languages import LanguagePair
from .policies.base import Policy, State
from .requests import Completion, Request
from .stream import Episode, Step

if TYPE_CHECKING:
    from .live_engines import LiveStream


class SentenceTooLongError(SeqpoError):
    """A live sentence grew past the allowed number of source units."""


@dataclass
class PlannedStep:
    """A read that is due: its state, and the model request (None: wait without the model)."""

    state: State
    request: Request | None
    chunk: str = ""  # the source text newly read at this step ("" for a finishing step)


class LiveEpisode:
    """One sentence streamed live: `feed` text, `end` it, and step through `next_step`/`record`."""

    def __init__(self, pair: LanguagePair, policy: Policy, chunk: int = 1, max_units: int | None = None,
                 max_chars: int | None = None):
        if chunk < 1:
            raise ValueError("chunk size must be at least 1")
        self.pair, self.policy, self.chunk, self.max_units = pair, policy, chunk, max_units
        self.max_chars = max_chars  # text without spaces (or only spaces) adds no units, but memory
        self.text = ""  # everything received so far, as received
        self.ended = False
        # Units are counted as text arrives, never by re-splitting the whole text (a long sentence
        # fed in small pieces would cost quadratic time): words complete so far (a word is complete
        # once whitespace follows it) and the word still growing; for character sources, the end
        # offset in `text` of each non-space character.
        self._words: list[str] = []
        self._partial = ""
        self._char_ends: list[int] = []
        self._start = -1  # offset of the first non-space character (character sources)
        self.read_units = 0  # units the policy has seen
        self.episode = Episode(source="", source_unit=pair.source_unit, target_unit=pair.target_unit)
        self._open: PlannedStep | None = None  # a step waiting for its completion

    # -- the source side ----------------------------------------------------------------------
    def feed(self, text: str) -> None:
        if self.ended:
            raise RuntimeError("this sentence has ended; start a new LiveEpisode")
        if self.max_chars is not None and len(self.text) + len(text) > self.max_chars:
            raise SentenceTooLongError(
                f"sentence longer than {self.max_chars} characters; send an end sooner")
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

    def end(self) -> None:
        self.ended = True
        self.episode.source = self.text.strip()
        if self._partial:
            self._words.append(self._partial)
            self._partial = ""

    def complete_units(self) -> int:
        """Source units known to be complete: a trailing word may still grow until whitespace or end."""
        return len(self._char_ends) if self.pair.source_unit == "char" else len(self._words)

    def prefix(self, n: int) -> str:
        """The first n source units, as `simulate` shows them (words joined by one space; for
        character sources the original substring, inner spaces kept: `stream.chunk_source`)."""
        if self.pair.source_unit == "char":
            return self.text[self._start : self._char_ends[n - 1]] if n else ""
        return " ".join(self._words[:n])

    # -- the policy side ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The sentence is finished: ended, and its finishing step recorded (or it was empty)."""
        if not self.ended or self._open is not None:
            return False
        return self.complete_units() == 0 or bool(self.episode.steps and self.episode.steps[-1].finished)

    def next_step(self) -> PlannedStep | None:
        """The next due read (consumed now), or None: a step is open, not enough source, or done."""
        if self._open is not None or self.done:
            return None
        available = self.complete_units()
        if self.ended:
            if available == 0:
                return None
            n = min(available, self.read_units + self.chunk)
            finished = n == available
        elif available - self.read_units >= self.chunk:
            n, finished = self.read_units + self.chunk, False
        else:
            return None
        before = self.prefix(self.read_units) if self.read_units else ""
        chunk = self.prefix(n)[len(before):]
        if self.pair.source_unit == "word":
            chunk = chunk.lstrip()
        self.read_units = n
        state = State(pair=self.pair, source_prefix=self.prefix(n), read_units=n, source_finished=finished,
                      target=self.episode.prediction, step=len(self.episode.steps) + 1)
        self._open = PlannedStep(state, self.policy.plan(state), chunk)
        return self._open

    def record(self, completion: Completion | None, elapsed_ms: float | None = None) -> Step:
        """Close the open step with the model's completion (None when the policy asked for none)."""
        planned, self._open = self._open, None
        if planned is None:
            raise RuntimeError("no step is open")
        if (completion is None) != (planned.request is None):
            raise ValueError("a completion is needed exactly when the step made a request")
        state = planned.state
        written = self.policy.segment(state, completion) if completion is not None else ""
        if elapsed_ms is None:
            elapsed_ms = completion.elapsed_ms if completion is not None else 0.0
        step = Step(read=state.read_units, written=written, elapsed_ms=elapsed_ms, finished=state.source_finished,
                    chunk=planned.chunk)
        self.episode.steps.append(step)
        return step


def run_live(live: LiveEpisode, generator: Generator | None, stream: LiveStream | None = None) -> Iterator[Step]:
    """Run every step that is due now with a plain Generator (scripts and tests; the server batches
    sessions through its worker instead).

    With a `stream` (append/slots decoding, `seqpo.live_engines`) the sentence is an engine episode:
    the stream is told every read and every written segment, and `generator` is whatever runs the
    stream's model steps (`EngineSet`, or the server's worker), called as `complete(requests, streams)`.
    """
    while (planned := live.next_step()) is not None:
        if planned.request is not None and generator is None:
            raise RuntimeError(f"policy '{live.policy.name}' needs a model")
        if stream is not None:
            stream.read(planned.chunk, last=planned.state.source_finished)
        completion = None
        if planned.request is not None:
            completion = generator.complete([planned.request])[0] if stream is None else \
                generator.complete([planned.request], [stream])[0]
        step = live.record(completion)
        if stream is not None:
            stream.write(step.written)
        yield step
