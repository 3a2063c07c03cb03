"""One WebSocket client of `/ws/translate` (the protocol is in `protocol.py`).

Two coroutines share a connection: the receive loop applies messages at once (so source keeps
arriving while the model runs) and the stepper (`steps.SentenceQueue.run`) runs due policy steps
of the oldest unfinished sentence through the shared `ModelWorker`. A start begins a session
(`sessions.py`: text, long-form text or audio); a sentence that fails (busy, too long, model
error, worker dead) is dropped with one error (`fail`, for text and audio sentences alike) and
the rest of its source, up to its end, is ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .failures import failure_of
from .metrics import ServerMetrics
from .protocol import ProtocolError, parse_message
from .sessions import BINARY_NEEDS_AUDIO, AudioSession, TextSession
from .steps import SentenceQueue
from .worker import ModelWorker

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, ws: WebSocket, settings, worker: ModelWorker, metrics: ServerMetrics, speech=None):
        self.ws, self.settings, self.worker, self.metrics = ws, settings, worker, metrics
        self.speech = speech  # the app's SpeechService (audio sessions)
        self.session: TextSession | AudioSession | None = None  # what the last start began
        self.queue = SentenceQueue(self)  # the text sentences and their stepper
        self.send_lock = asyncio.Lock()

    async def send(self, payload: dict) -> None:
        async with self.send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(json.dumps(payload, ensure_ascii=False))

    async def error(self, code: str, message: str, sentence: int | None = None) -> None:
        self.metrics.errors.labels(code).inc()
        payload = {"type": "error", "code": code, "message": message}
        if sentence is not None:
            payload["sentence"] = sentence
        await self.send(payload)

    async def fail(self, exc: Exception, sentence: int) -> None:
        """A sentence (text or audio) failed in the worker or the model: the one error
        `failures.failure_of` names for it; the session goes on without the sentence."""
        failure = failure_of(exc)
        await self.error(failure.code, failure.live_message, sentence)

    def next_index(self) -> int:
        """The number of the connection's next sentence (text or audio)."""
        return self.queue.next_index()

    def end_session(self) -> None:
        """A new start replaces the session (an audio one stops its stream)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    async def run(self) -> None:
        self.metrics.sessions.inc()
        self.metrics.sessions_active.inc()
        stepper = asyncio.create_task(self.queue.run())
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.idle_timeout)
                except asyncio.TimeoutError:
                    if self.working():  # the client waits for us, it is not idle
                        continue
                    await self.error("idle", f"no message for {self.settings.idle_timeout:g} s; closing")
                    await self.ws.close(code=1000)
                    return
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    await self.handle(message)
                except ProtocolError as exc:
                    await self.error(exc.code, str(exc))
                if stepper.done():  # a bug in the stepper must not leave a silent session
                    stepper.result()
        except WebSocketDisconnect:
            return
        finally:
            self.end_session()
            stepper.cancel()
            for sentence in self.queue.sentences:  # before any await, which a cancelled session never ends
                self.queue.release(sentence)
            # collects the stepper's end; a send to a client that just left fails there, harmlessly
            await asyncio.gather(stepper, return_exceptions=True)
            dropped = self.worker.drop(self)
            self.metrics.dropped.set(self.worker.dropped)
            self.metrics.sessions_active.dec()
            if dropped:
                log.info("client gone: dropped %d queued requests", dropped)

    def working(self) -> bool:
        """Some ended sentence is still being translated (or audio is being transcribed)."""
        return (self.session is not None and self.session.busy) or self.queue.working()

    async def handle(self, message: dict) -> None:
        if message.get("text") is None:  # a binary frame: audio
            if self.session is None:
                raise ProtocolError("binary", BINARY_NEEDS_AUDIO)
            self.session.audio_frame(message.get("bytes") or b"")
            return
        msg = parse_message(message["text"], self.settings.max_message_bytes)
        kind = msg.get("type")
        if kind == "start":
            if msg.get("input", "text") == "audio":
                self.session = await AudioSession.start(self, msg)
            else:
                self.session = TextSession.start(self, msg)
            await self.send(self.session.ready())
        elif kind == "source":
            if self.session is None:
                raise ProtocolError("no_start", "send {\"type\": \"start\"} before any source text")
            await self.session.source(msg)
        elif kind == "end":
            if self.session is None:
                raise ProtocolError("no_sentence", "end without a sentence: send source text first")
            self.session.end()
        else:
            raise ProtocolError("bad_type", f"unknown message type {kind!r} (start, source, end)")
        self.queue.wake.set()
