"""Stepping the text sentences of a WebSocket connection: the stepper runs due policy steps of
the oldest unfinished sentence through the shared `ModelWorker` while the receive loop keeps
adding source (`connection.py`). A sentence that fails (busy, too long, model error, worker dead)
is dropped with one error (`Connection.fail`); with append/slots decoding each sentence is also
an engine episode (`new_row`), released when it is done, dropped or its connection ends.
`run_due_steps` is also the POST /translate route's stepper (`app.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..driver import EpisodeRun, step_async
from ..languages import parse_pair
from ..live_engines import LiveRow
from ..model_steps import CompleterSteps
from ..policies import make_policy
from ..stream import Step
from .metrics import ServerMetrics
from .protocol import SessionConfig, done_payload, step_payload
from .worker import ModelWorker, WorkerClient


def new_episode(config: SessionConfig, max_units: int, max_chars: int | None = None) -> EpisodeRun:
    policy = make_policy(config.policy, k=config.k, chunk=config.chunk, few_shot=config.few_shot)
    return EpisodeRun(parse_pair(config.pair), policy, chunk=config.chunk, max_units=max_units,
                      max_chars=max_chars)


def new_row(config: SessionConfig, max_units: int, worker: ModelWorker) -> LiveRow | None:
    """The engine episode of a new sentence (append/slots decoding; None with re-encode)."""
    if worker.engines is None:
        return None
    return worker.engines.open_row(parse_pair(config.pair), config.adapter, config.few_shot, max_units)


async def run_due_steps(live: EpisodeRun, worker: ModelWorker, owner: object, metrics: ServerMetrics,
                        adapter: str | None = None, row: LiveRow | None = None
                        ) -> AsyncIterator[tuple[Step, float]]:
    """Run every step of `live` that is due now (`driver.step_async`), its requests through the
    worker on the session's `adapter` (`SessionConfig.adapter`); `row` (append/slots) is the
    sentence's engine episode. Yields (step, latency ms)."""
    client = WorkerClient(worker, owner, asyncio.get_running_loop(), metrics, adapter=adapter)
    live.model = CompleterSteps(client)
    live.row = live.model.open(row=row)
    t0 = time.perf_counter()
    async for step in step_async(live, lambda request: client.submit(request, row)):
        metrics.steps.labels("update" if step.display is not None else "write" if step.written else "wait").inc()
        yield step, (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()


@dataclass
class Sentence:
    index: int
    live: EpisodeRun
    config: SessionConfig
    failed: bool = False
    # append/slots decoding: its engine episode, opened when the sentence is the oldest one of its
    # connection (so a connection holds one engine row however many sentences wait)
    row: LiveRow | None = None


class SentenceQueue:
    """A connection's sentences, oldest first (only the last may be open), their numbers, and the
    long-form streams waiting for their stream_end; `run` is the stepper."""

    def __init__(self, conn):
        self.conn = conn  # the Connection: its worker, metrics, settings, send and fail
        self.sentences: deque[Sentence] = deque()
        self.count = 0  # sentence numbers given (text and audio sentences share them)
        # long-form: (first, last) sentence numbers of each ended stream not yet told with stream_end,
        # the first number of the stream now open, and the done sentences of the oldest ended stream
        self.stream_ends: deque[tuple[int, int]] = deque()
        self.stream_first = 1
        self.stream_done = 0
        self.wake = asyncio.Event()

    def next_index(self) -> int:
        self.count += 1
        return self.count

    def open_sentence(self) -> Sentence | None:
        if self.sentences and not self.sentences[-1].live.ended:
            return self.sentences[-1]
        return None

    def add(self, index: int, config: SessionConfig) -> Sentence:
        settings = self.conn.settings
        sentence = Sentence(index, new_episode(config, settings.max_sentence_words, settings.max_sentence_chars),
                            config)
        self.sentences.append(sentence)
        return sentence

    def working(self) -> bool:
        """Some ended sentence is still being translated."""
        return any(s.live.ended and not s.failed and not s.live.done for s in self.sentences)

    def abandon(self) -> None:
        """A new start abandons unfinished sentences and ended long-form streams (no stream_end
        for them)."""
        for sentence in self.sentences:
            sentence.failed = True
            sentence.live.ended = True
        # their queued step (at most one) still runs; the stepper discards its result
        self.stream_ends.clear()
        self.stream_first, self.stream_done = self.count + 1, 0

    def end_stream(self) -> None:
        """The long-form stream ends: told once its sentences are over."""
        self.stream_ends.append((self.stream_first, self.count))
        self.stream_first = self.count + 1

    async def run(self) -> None:
        conn = self.conn
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.sentences:
                sentence = self.sentences[0]
                if not sentence.failed:
                    if sentence.row is None:
                        sentence.row = new_row(sentence.config, conn.settings.max_sentence_words, conn.worker)
                    await self._advance(sentence)
                if sentence.failed and sentence.live.ended:
                    self.sentences.popleft()
                    self.release(sentence)
                elif sentence.live.done:
                    self.sentences.popleft()
                    self.release(sentence)
                    conn.metrics.sentences.labels("ws").inc()
                    self.stream_done += 1  # before the send, during which a start may begin a new stream
                    await conn.send(done_payload(sentence.index, sentence.live))
                else:
                    break  # waiting for more source
                await self.end_streams()
            await self.end_streams()  # streams that ended with no sentence left to translate

    async def end_streams(self) -> None:
        """A `stream_end` for each ended long-form stream whose sentences are all done or dropped."""
        while self.stream_ends and not (self.sentences and self.sentences[0].index <= self.stream_ends[0][1]):
            first, last = self.stream_ends.popleft()
            done, self.stream_done = self.stream_done, 0
            await self.conn.send({"type": "stream_end", "sentences": done, "dropped": last - first + 1 - done})

    def release(self, sentence: Sentence) -> None:
        """Free the engine row of a sentence that is done or dropped (append/slots)."""
        if sentence.row is not None:
            self.conn.worker.release(sentence.row)
            sentence.row = None

    async def _advance(self, sentence: Sentence) -> None:
        conn = self.conn
        try:
            steps = run_due_steps(sentence.live, conn.worker, conn, conn.metrics, sentence.config.adapter,
                                  sentence.row)
            async for step, latency_ms in steps:
                if sentence.failed:  # dropped (restart, too long) while its step ran
                    return
                await conn.send(step_payload(sentence.index, sentence.live, step, latency_ms))
        except Exception as exc:  # busy, worker dead, slots region full, the model failed: keep serving
            sentence.failed = True
            await conn.fail(exc, sentence.index)
