"""Speech input for the server: audio (English, or with `--asr base` any source seqpo knows) from the page's microphone (binary WebSocket frames
of 16-bit little-endian mono PCM at 16 kHz) or an uploaded recording (any format and rate,
decoded to 16 kHz mono), through the same `SpeechCascade` as `seqpo translate --audio`.

The cascade is synchronous (an ASR decode, then the policy steps due on its stable words), so each
audio stream runs it on a thread of its own (`--max-audio-sessions` threads at most); its model
requests still go through the shared `ModelWorker` (bounded queue, batching, fairness) via
`WorkerClient`, and its events are sent by the event loop. Audio that arrives while a decode
runs is queued and decoded in one piece next time, so a stream that falls behind catches up with
fewer, longer decodes instead of an ever longer queue (and the VAD skips decoding silence); how
far behind each stream is (`asr_lag_ms`: audio accepted but not yet through the ASR) is in its
word events and in /health. With append/slots decoding each sentence
is an engine episode (`seqpo.live_engines`) whose steps go through the worker the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable

import numpy as np

from ..events import done_event, step_event
from ..languages import parse_pair
from ..policies import make_policy
from ..speech.asr import load_whisper, streaming_asr
from ..speech.audio import audio_from_bytes
from ..speech.cascade import SpeechCascade, stream_audio
from .metrics import ServerMetrics
from .worker import Busy, ModelWorker, StreamClosed, WorkerClient, wait_for

SAMPLE_RATE = 16000  # what Whisper takes; the page resamples the microphone to it


class SpeechService:
    """Per app: Whisper (loaded on first use), the cascade threads and the count of open streams."""

    def __init__(self, settings):
        self.settings = settings
        self.max_streams = settings.max_audio_sessions
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_streams,
                                                              thread_name_prefix="seqpo-speech")
        self.active = 0
        self.streams: set[AudioStream] = set()  # open WebSocket audio streams (for their lag)
        self._whisper = None
        self._lock: asyncio.Lock | None = None

    async def whisper(self):
        """The Whisper `--asr` names, loaded once (off the event loop); SeqpoError if the extra is missing."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._whisper is None:
                self._whisper = await asyncio.get_running_loop().run_in_executor(
                    self.executor, functools.partial(load_whisper, name=self.settings.asr))
        return self._whisper

    def acquire(self) -> None:
        if self.active >= self.max_streams:
            raise Busy(f"server busy: {self.active} audio streams open (limit {self.max_streams})")
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def lags_ms(self) -> list[float]:
        """Each open audio stream's `asr_lag_ms` (for /health)."""
        return [round(stream.lag_ms, 1) for stream in list(self.streams)]

    def cascade(self, whisper, config, generator, **callbacks):
        s = self.settings
        pair = parse_pair(config.pair)
        asr = streaming_asr(whisper, s, pair.source)
        policy = make_policy(config.policy, k=config.k, chunk=config.chunk, few_shot=config.few_shot)
        engines = generator.worker.engines
        new_row = None if engines is None else \
            (lambda: engines.open_row(pair, config.adapter, config.few_shot, s.max_sentence_words))
        return SpeechCascade(asr, pair, policy, generator, config.chunk, max_units=s.max_sentence_words,
                             new_row=new_row, **callbacks)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class CascadeEvents:
    """The cascade's callbacks (run on its thread): numbered sentences, events in protocol form."""

    def __init__(self, emit: Callable[[dict], None], next_index: Callable[[], int], generator: WorkerClient,
                 metrics: ServerMetrics, endpoint: str, lag_ms: Callable[[], float] | None = None):
        self.emit, self.next_index, self.generator, self.metrics, self.endpoint = \
            emit, next_index, generator, metrics, endpoint
        self.lag_ms = lag_ms  # a live stream's ASR lag, sent with each word
        self.live = None
        self.index = 0
        self.sentences = 0

    def callbacks(self) -> dict:
        return {"on_word": self.on_word, "on_step": self.on_step, "on_done": self.on_done}

    def on_word(self, live, word) -> None:
        if live is not self.live:
            self.live, self.index = live, self.next_index()
        lag = {} if self.lag_ms is None else {"asr_lag_ms": round(self.lag_ms(), 1)}
        self.emit({"type": "word", "sentence": self.index, **word.to_dict(), **lag})

    def on_step(self, live, step) -> None:
        self.metrics.steps.labels("write" if step.written else "wait").inc()
        latency, self.generator.last_latency_ms = self.generator.last_latency_ms, 0.0
        self.emit({**step_event(live.episode, step), "sentence": self.index, "latency_ms": round(latency, 1)})

    def on_done(self, episode, _words) -> None:
        self.metrics.sentences.labels(self.endpoint).inc()
        self.sentences += 1
        self.emit({**done_event(episode), "sentence": self.index})


class AudioStream:
    """One WebSocket audio stream: from its start message to its end (or a new start)."""

    def __init__(self, connection, config, whisper, service: SpeechService):
        self.conn, self.config, self.service = connection, config, service
        self.loop = asyncio.get_running_loop()
        self.closed = threading.Event()
        self.generator = WorkerClient(connection.worker, connection, self.loop, connection.metrics, self.closed,
                                      config.adapter)
        self.events = CascadeEvents(self._emit, connection.next_index, self.generator, connection.metrics, "ws",
                                    lambda: self.lag_ms)
        self.cascade = service.cascade(whisper, config, self.generator, **self.events.callbacks())
        self.pending: list[np.ndarray] = []
        self.received = 0  # samples accepted
        self.fed = 0  # samples the ASR has been through
        self.ended = False  # the client sent end
        self.finished = False  # the last words are out
        self.refused = False  # audio beyond the limit was refused (told once)
        self.running = False
        self.wake = asyncio.Event()
        self.task = self.loop.create_task(self._run(), name="seqpo-audio-stream")
        service.streams.add(self)

    @property
    def lag_ms(self) -> float:
        """Audio accepted but not yet through the ASR (queued, or in the decode now running)."""
        return (self.received - self.fed) * 1000.0 / SAMPLE_RATE

    @property
    def busy(self) -> bool:
        return self.running or bool(self.pending) or (self.ended and not self.finished)

    def add(self, samples: np.ndarray, limit: int) -> bool:
        """Queue samples; False (nothing queued) when they would pass `limit` samples."""
        if self.received + len(samples) > limit:
            return False
        self.received += len(samples)
        self.pending.append(samples)
        self.wake.set()
        return True

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def close(self) -> None:
        """Abandon the stream; its thread stops at its next model request or event."""
        self.closed.set()
        self.wake.set()

    def _emit(self, payload: dict) -> None:  # on the cascade thread
        if self.closed.is_set():
            raise StreamClosed("audio stream closed")
        wait_for(asyncio.run_coroutine_threadsafe(self.conn.send(payload), self.loop), self.closed)

    async def _call(self, fn, *args) -> None:
        self.running = True
        try:
            await self.loop.run_in_executor(self.service.executor, fn, *args)
        except StreamClosed:
            pass
        except Exception as exc:  # busy, worker dead, slots region full, ASR or model failure: keep the stream
            self.cascade.drop_sentence()
            await self.conn.fail(exc, self.events.index)  # told as a text sentence's failure is
        finally:
            self.running = False

    async def _run(self) -> None:
        try:
            while not self.closed.is_set() and not self.finished:
                await self.wake.wait()
                self.wake.clear()
                while self.pending and not self.closed.is_set():
                    if self.service.settings.asr_every_frame:  # reproducible: one decode per frame
                        samples = self.pending.pop(0)
                    else:  # catch up: what arrived while the ASR was busy is decoded at once
                        samples = np.concatenate(self.pending)
                        self.pending = []
                    await self._call(self.cascade.feed, samples)
                    self.fed += len(samples)
                if self.ended and not self.pending and not self.closed.is_set():
                    await self._call(self.cascade.finish)
                    self.finished = True
                    asr = self.cascade.asr
                    await self.conn.send({"type": "audio_end", "audio_ms": round(asr.received_ms, 1),
                                          "sentences": self.events.sentences, "transcript": asr.transcript,
                                          "asr_ms": round(asr.compute_ms, 1)})
        finally:
            self.cascade.drop_sentence()  # abandoned mid-sentence: free its engine episode (append/slots)
            self.service.streams.discard(self)
            self.service.release()


async def translate_upload(data: bytes, name: str, config, service: SpeechService, worker: ModelWorker,
                           metrics: ServerMetrics) -> dict:
    """An uploaded recording through the cascade in `--audio-chunk` pieces, as `seqpo translate
    --audio --json` runs it; every event in order, the done events and the transcript.

    It holds one of the `--max-audio-sessions` streams (else `Busy`) from decoding on, and decodes
    on the speech threads, stopping at `--max-audio-seconds` (`AudioTooLongError`); audio it cannot
    read raises `InputFileError`, a server without the speech extra `MissingExtraError`."""
    service.acquire()
    try:
        loop = asyncio.get_running_loop()
        samples = await loop.run_in_executor(service.executor, audio_from_bytes, data, name,
                                             service.settings.max_audio_seconds)
        whisper = await service.whisper()
        return await _translate_samples(samples, whisper, config, service, worker, metrics)
    finally:
        service.release()


async def _translate_samples(samples: np.ndarray, whisper, config, service: SpeechService, worker: ModelWorker,
                             metrics: ServerMetrics) -> dict:
    loop = asyncio.get_running_loop()
    owner, closed = object(), threading.Event()
    generator = WorkerClient(worker, owner, loop, metrics, closed, config.adapter)
    trace: list[dict] = []
    counter = iter(range(1, 1 << 30))
    events = CascadeEvents(trace.append, lambda: next(counter), generator, metrics, "http")
    cascade = service.cascade(whisper, config, generator, **events.callbacks())
    t0 = time.perf_counter()
    try:
        await loop.run_in_executor(service.executor, stream_audio, samples, cascade, service.settings.audio_chunk)
    finally:
        cascade.drop_sentence()  # a failed upload: free its engine episode (append/slots)
        closed.set()
        worker.drop(owner)
    done = [e for e in trace if e["type"] == "done"]
    asr = cascade.asr
    return {"type": "result", "sentences": done, "transcript": asr.transcript,
            "prediction": ("" if parse_pair(config.pair).target_unit == "char" else " ").join(
                d["prediction"] for d in done if d["prediction"]),
            "audio_ms": round(asr.received_ms, 1), "asr_ms": round(asr.compute_ms, 1),
            "wall_ms": round((time.perf_counter() - t0) * 1000.0, 1), "trace": trace}
