"""The one place the server runs the model: a single asyncio task that owns the Generator.

Sessions submit one request per policy step into a bounded queue kept per session; the worker
takes requests round-robin across sessions (one per session per round, so a chatty client cannot
starve the others) and runs up to `batch_size` of them, from different sessions, in one
`Generator.complete` call on a dedicated thread, keeping the event loop free for I/O.
A full queue refuses at once (`Busy`) instead of making clients wait without bound; a session that
goes away has its queued requests dropped (`drop`). Should the worker itself die (a bug, not a
failed model call), every waiting request fails with `WorkerDead` and so does every new one, so
no client waits for an answer that cannot come.

With append/slots decoding (`engines`), a request comes with the `LiveRow` of its sentence and
the worker batches continuously: each round starts the steps of newly taken requests (up to
`batch_size` running at once) and runs one forward pass over every running step
(`EngineSet.advance`), so a session's wait or short write comes back after its own passes instead
of after the longest step of its batch. Every engine call stays on the model thread.

A session sees the worker through a `WorkerClient` (its owner, adapter and metrics): requests from
the event loop (`submit`) or from a thread of its own (`complete`, a speech cascade), and its
sentences' reads and writes queued on their rows; `model_steps.CompleterSteps(client)` steps them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ..errors import SeqpoError
from ..generation import Generator
from ..live_engines import EngineSet, LiveRow
from ..requests import Completion, Request

log = logging.getLogger(__name__)


class Busy(SeqpoError):
    """The model queue is full; the request was not accepted."""


class WorkerDead(SeqpoError):
    """The model worker has stopped; no request can be served."""


class StreamClosed(SeqpoError):
    """The session's stream was abandoned (new start, client gone): stop working on it."""


@dataclass
class _Job:
    request: Request
    future: asyncio.Future
    row: LiveRow | None = None  # append/slots: the engine episode the request continues


class ModelWorker:
    def __init__(self, generator: Generator, queue_size: int = 64, batch_size: int = 8,
                 on_batch: Callable[[int], None] | None = None, engines: EngineSet | None = None):
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self.generator = generator
        self.engines = engines  # append/slots decoding: the live rows' engines (None: re-encode)
        self._flush_due = False  # a row was released: free its engine row even if no request comes
        self.queue_size, self.batch_size = queue_size, batch_size
        self.on_batch = on_batch  # called with each batch's size (metrics)
        self._queues: OrderedDict[object, deque[_Job]] = OrderedDict()
        self._pending = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # one thread: torch already uses every core inside a forward pass, and the Generator's
        # prefix cache is not meant to be shared between threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqpo-model")
        self.dropped = 0  # queued requests discarded because their session went away
        self._running: dict[int, _Job] = {}  # append/slots: started steps, by id of their row
        self.failure: BaseException | None = None  # what killed the worker
        self._taken: list[_Job] = []  # the last batch taken off the queues (failed too if the worker dies)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def state(self) -> str:
        """ok, dead (stopped by an error) or stopped (not started, or shut down)."""
        return "ok" if self.alive else "dead" if self.failure is not None else "stopped"

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seqpo-model-worker")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """The worker task is over: fail whatever still waits on it."""
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            log.error("model worker died", exc_info=self.failure)
        error = WorkerDead(f"the model worker has stopped: {self.failure!r}" if self.failure else
                           "the model worker has stopped")
        jobs = [job for queue in self._queues.values() for job in queue] + list(self._running.values()) + \
            self._taken
        self._queues.clear()
        self._running.clear()
        self._pending = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, owner: object, request: Request, row: LiveRow | None = None) -> Completion:
        """Queue one request for `owner` (a session) and wait for its completion; with append/slots
        decoding, `row` is the sentence the request continues."""
        if not self.alive:
            raise WorkerDead(f"the model worker has stopped: {self.failure!r}" if self.failure else
                             "the model worker is not running")
        if self._pending >= self.queue_size:
            raise Busy(f"server busy: {self._pending} model requests queued (limit {self.queue_size})")
        if (row is None) != (self.engines is None):
            raise ValueError("a request carries a LiveRow exactly when the worker runs live engines")
        future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(owner, deque()).append(_Job(request, future, row))
        self._pending += 1
        self._wake.set()
        return await future

    def drop(self, owner: object) -> int:
        """Discard `owner`'s queued requests (a request already running finishes unseen)."""
        jobs = self._queues.pop(owner, deque())
        for job in jobs:
            job.future.cancel()
        self._pending -= len(jobs)
        self.dropped += len(jobs)
        return len(jobs)

    def release(self, row: LiveRow) -> None:
        """A sentence is done or dropped (event loop thread): free its engine row soon."""
        self.engines.release(row)
        self._flush_due = True
        if self._wake is not None:
            self._wake.set()

    def _take_batch(self, limit: int | None = None) -> list[_Job]:
        limit = self.batch_size if limit is None else limit
        batch: list[_Job] = []
        while self._queues and len(batch) < limit:
            for owner in list(self._queues):  # one round: at most one job per session
                if len(batch) == limit:
                    break
                jobs = self._queues[owner]
                job = jobs.popleft()
                self._pending -= 1
                if jobs:
                    self._queues.move_to_end(owner)  # served: to the back of the line
                else:
                    del self._queues[owner]
                if not job.future.done():  # its session may have stopped waiting
                    batch.append(job)
        self._taken = batch
        return batch

    async def _run(self) -> None:
        if self.engines is not None:
            return await self._run_engines()
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (batch := self._take_batch()) or self._flush_due:
                self._flush_due = False
                if not batch:  # only released rows: free their rows
                    try:
                        await loop.run_in_executor(self._executor, self.engines.flush)
                    except Exception:
                        log.exception("freeing engine rows failed")
                    continue
                if self.on_batch:
                    self.on_batch(len(batch))
                try:
                    completions = await loop.run_in_executor(self._executor, self._model_call, batch)
                except Exception as exc:  # a failed model call fails its requests, not the server
                    log.exception("model call failed")
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                for job, completion in zip(batch, completions):
                    if job.future.done():
                        continue
                    if isinstance(completion, Exception):  # this sentence only (its slots region is full)
                        job.future.set_exception(completion)
                    else:
                        job.future.set_result(completion)

    def _model_call(self, batch: list[_Job]) -> list[Completion | Exception]:
        """On the model thread: the batch through the Generator (re-encode)."""
        return self.generator.complete([job.request for job in batch])

    async def _run_engines(self) -> None:
        """Continuous batching over the live engines (append/slots)."""
        loop = asyncio.get_running_loop()
        while True:
            if not (self._running or self._queues or self._flush_due):
                await self._wake.wait()
            self._wake.clear()
            self._flush_due = False
            batch = self._take_batch(self.batch_size - len(self._running))
            if self.on_batch and (batch or self._running):
                self.on_batch(len(batch) + len(self._running))
            try:
                errors, finished = await loop.run_in_executor(self._executor, self._engine_round, batch)
            except Exception as exc:  # a failed model call fails the running steps, not the server
                log.exception("model call failed")
                for job in batch + list(self._running.values()):
                    if not job.future.done():
                        job.future.set_exception(exc)
                self._running.clear()
                await loop.run_in_executor(self._executor, self.engines.abort)
                continue
            for job, error in zip(batch, errors):
                if error is not None:  # this sentence only (its slots region is full, or it closed)
                    if not job.future.done():
                        job.future.set_exception(error)
                else:
                    self._running[id(job.row)] = job
            for row, completion in finished:
                job = self._running.pop(id(row), None)
                if job is not None and not job.future.done():
                    job.future.set_result(completion)
            for key, job in list(self._running.items()):  # sentences dropped mid-step
                if job.row.closed:
                    del self._running[key]
                    job.future.cancel()

    def _engine_round(self, batch: list[_Job]):
        """On the model thread: apply the rows' queued calls and start the new steps (released
        rows free their rows there), then one pass over every running step."""
        errors = self.engines.start_each([job.request for job in batch], [job.row for job in batch])
        return errors, self.engines.advance() if self.engines.busy else []


class WorkerClient:
    """One session's side of the worker, the adapter for rows the model thread owns: the reads,
    writes and release of its sentences' rows (`EngineSet.open_row`, append/slots/cached decoding),
    queued for the model thread, and its model requests on the session's adapter (`SessionConfig.adapter`), timed
    into the metrics: `submit` on the event loop (a text session), `complete` from a thread of the
    session's own (a speech cascade), which waits for the answer unless `closed` is set first.
    `CompleterSteps(client)` is the session's `ModelSteps`."""

    def __init__(self, worker: ModelWorker, owner: object, loop: asyncio.AbstractEventLoop, metrics,
                 closed: threading.Event | None = None, adapter: str | None = None):
        self.worker, self.owner, self.loop, self.metrics = worker, owner, loop, metrics
        self.closed = closed or threading.Event()
        self.adapter = adapter
        self.last_latency_ms = 0.0  # queue + model time of the last request (for the step event)

    def read(self, row: LiveRow, chunk: str, last: bool = False) -> None:
        self.worker.engines.read(row, chunk, last)

    def write(self, row: LiveRow, segment: str) -> None:
        self.worker.engines.write(row, segment)

    def release(self, row: LiveRow) -> None:
        """The sentence is done or dropped (any thread): the worker frees its row."""
        self.loop.call_soon_threadsafe(self.worker.release, row)

    async def submit(self, request: Request, row: LiveRow | None = None) -> Completion:
        """One request through the worker (on the event loop)."""
        if self.adapter is not None:
            request = replace(request, adapter=self.adapter)
        t0 = time.perf_counter()
        completion = await self.worker.submit(self.owner, request, row)
        seconds = time.perf_counter() - t0
        self.metrics.step_latency.observe(seconds)
        self.last_latency_ms = seconds * 1000.0
        return completion

    def complete(self, requests: list[Request], rows: list | None = None) -> list[Completion]:
        """Like `Generator.complete`, from a thread that is not the event loop's; `rows`: the
        requests' sentences (append/slots/cached decoding)."""
        out = []
        for i, request in enumerate(requests):
            row = rows[i] if rows is not None else None
            out.append(wait_for(asyncio.run_coroutine_threadsafe(self.submit(request, row), self.loop), self.closed))
        return out


def wait_for(future: concurrent.futures.Future, closed: threading.Event):
    """The future's result, giving up when the stream is closed (the loop may never answer then)."""
    while True:
        try:
            return future.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            if closed.is_set():
                future.cancel()
                raise StreamClosed("audio stream closed") from None
        except concurrent.futures.CancelledError:
            raise StreamClosed("audio stream closed") from None
