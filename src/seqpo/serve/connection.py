"""The WebSocket protocol of `/ws/translate`: one `Connection` per client, its own sentences.

Client -> server (JSON text frames):
  {"type": "start", "pair": "en-de", "policy": "llm", "k": 3, "chunk": 1}   (all but type optional)
  {"type": "source", "text": "..."}   text as it arrives; a word counts once whitespace follows it
  {"type": "end"}                     the sentence is complete
  Long-form text: {"type": "start", "long_form": true, ...} (the default under `seqpo serve
  --long-form`; false asks for sentences) makes `source` one unsegmented stream: the server closes
  a sentence at a unit ending in . ? ! (a word once whitespace follows it; each character of a
  zh/ja source) or after --max-sentence-units units (`sentences.SentenceCutter`, the rule of
  `seqpo translate --long-form`), and the text after it starts the next sentence; {"type": "end"}
  ends the stream, closing its open sentence (none if it ended at a sentence end), and is answered
  by a stream_end once every sentence of the stream is done or dropped.
  Speech: {"type": "start", "input": "audio", "sample_rate": 16000, ...} (English source pairs),
  then binary frames of 16-bit little-endian mono PCM at 16 kHz; {"type": "end"} ends the audio.
Server -> client:
  {"type": "ready", ...settings, "long_form"[, "max_sentence_units"]}   after each text start
  {"type": "write", "sentence", "text", "read", "target", "elapsed_ms", "latency_ms"}
  {"type": "wait", "sentence", "read", "elapsed_ms", "latency_ms"}
  {"type": "update", "sentence", "display", "read", "elapsed_ms", "latency_ms"}   policy retranslate:
                                      every step; `display` replaces the translation shown
  {"type": "done", "sentence", "source", "prediction", "delays", "AL", "LAAL", "wait_fraction"}
  {"type": "stream_end", "sentences", "dropped"}   long-form: after the last sentence of a stream
  {"type": "error", "code", "message"[, "sentence"]}   the connection stays usable
Limits: a frame over the larger of --max-message-bytes and --max-audio-frame-bytes closes the
connection (1009, before it is read); a smaller one over its own limit is a too_large error. Beyond
--max-sessions open sessions a new one gets a busy error and is closed (1013); a session with
--max-queued-sentences sentences waiting refuses the next (busy, its source ignored up to its
end, which in a long-form stream is where the server closes it: the stream goes on with the next).
A sentence over --max-sentence-words units or --max-sentence-chars characters is too_long.
A handshake from a web page of another origin, or naming a Host the server does not answer to
(--allow-host), is refused (403; see admission.py).
  Speech adds {"type": "word", "sentence", "text", "start_ms", "end_ms", "known_ms"} per stable
  word, `audio_ms` on steps, speech latency (ms) on done, and {"type": "audio_end", "audio_ms",
  "sentences", "transcript", "asr_ms"} once the end has been flushed (see audio.py).

Two coroutines share a connection: the receive loop applies messages at once (so source keeps
arriving while the model runs) and the stepper runs due policy steps of the oldest unfinished
sentence through the shared `ModelWorker`. A sentence that fails (busy, too long, model error,
worker dead) is dropped with one error (`fail`, for text and audio sentences alike); the rest of
its source, up to its end, is ignored. With append/slots decoding each sentence is also an engine
episode (`new_row`), released when it is done, dropped or its connection ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..config import check_asr_language
from ..errors import SeqpoError, SettingsError
from ..events import done_event, step_event
from ..languages import parse_pair
from ..live_engines import LiveRow
from ..prompts import check_supported
from ..sentences import SentenceCutter
from ..speech.audio import pcm16_to_float
from ..policies import POLICY_NAMES, check_decoding, make_policy
from ..driver import EpisodeRun, SentenceTooLongError, step_async
from ..model_steps import CompleterSteps
from ..stream import Step
from .audio import SAMPLE_RATE, AudioStream
from .failures import failure_of
from .metrics import ServerMetrics
from .worker import Busy, ModelWorker, WorkerClient

log = logging.getLogger(__name__)


class ProtocolError(SeqpoError):
    """A client message the server cannot act on; `code` names the kind for clients."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class SessionConfig:
    pair: str
    policy: str
    k: int
    chunk: int
    few_shot: bool = True
    adapter: str | None = None  # Request.adapter of the session's steps (None: the model as loaded)


def parse_config(msg: dict, defaults) -> SessionConfig:
    """Settings of a start message (or a POST body), falling back to the server's settings."""
    pair = msg.get("pair", defaults.pair)
    policy = msg.get("policy", defaults.policy)
    if not isinstance(pair, str):
        raise ProtocolError("bad_pair", "pair must be a string like 'en-de'")
    try:
        pair = str(check_supported(parse_pair(pair)))
    except SeqpoError as exc:
        raise ProtocolError("bad_pair", str(exc)) from exc
    if policy not in POLICY_NAMES:
        raise ProtocolError("bad_policy", f"unknown policy {policy!r} (choose from {', '.join(POLICY_NAMES)})")
    try:
        check_decoding(policy, getattr(defaults, "decoding", "reencode"))
    except SeqpoError as exc:
        raise ProtocolError("bad_policy", str(exc)) from exc
    numbers = {}
    for name in ("k", "chunk"):
        value = msg.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ProtocolError("bad_value", f"{name} must be an integer from 1 to 64")
        numbers[name] = value
    if hasattr(defaults, "session_adapter"):  # ServeSettings: per-pair adapters
        adapter, few_shot = defaults.session_adapter(pair), defaults.session_few_shot(pair)
    else:
        adapter, few_shot = None, defaults.use_few_shot()
    return SessionConfig(pair, policy, **numbers, few_shot=few_shot, adapter=adapter)


def parse_speech_config(msg: dict, defaults) -> SessionConfig:
    """`parse_config` for audio input (a microphone stream or an upload): the pair's source must be
    a language the server's `--asr` hears (`bad_pair`)."""
    config = parse_config(msg, defaults)
    try:
        check_asr_language(defaults.asr, parse_pair(config.pair))
    except SettingsError as exc:
        raise ProtocolError("bad_pair", str(exc)) from exc
    return config


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


def step_payload(index: int, live: EpisodeRun, step: Step, latency_ms: float) -> dict:
    return {**step_event(live.episode, step), "sentence": index, "latency_ms": round(latency_ms, 1)}


def done_payload(index: int, live: EpisodeRun) -> dict:
    return {**done_event(live.episode), "sentence": index}


@dataclass
class _Sentence:
    index: int
    live: EpisodeRun
    config: SessionConfig
    failed: bool = False
    # append/slots decoding: its engine episode, opened when the sentence is the oldest one of its
    # connection (so a connection holds one engine row however many sentences wait)
    row: LiveRow | None = None


class Connection:
    def __init__(self, ws: WebSocket, settings, worker: ModelWorker, metrics: ServerMetrics, speech=None):
        self.ws, self.settings, self.worker, self.metrics = ws, settings, worker, metrics
        self.speech = speech  # the app's SpeechService (audio sessions)
        self.config: SessionConfig | None = None
        self.sentences: deque[_Sentence] = deque()  # oldest first; only the last may be open
        self.count = 0
        self.refusing = False  # a sentence was refused (too many waiting): ignore its source up to its end
        self.cutter: SentenceCutter | None = None  # a long-form text session: where its sentences end
        # long-form: (first, last) sentence numbers of each ended stream not yet told with stream_end,
        # the first number of the stream now open, and the done sentences of the oldest ended stream
        self.stream_ends: deque[tuple[int, int]] = deque()
        self.stream_first = 1
        self.stream_done = 0
        self.audio = None  # the AudioStream of a session started with input audio
        self.wake = asyncio.Event()
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

    async def run(self) -> None:
        self.metrics.sessions.inc()
        self.metrics.sessions_active.inc()
        stepper = asyncio.create_task(self._step_loop())
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
            if self.audio is not None:
                self.audio.close()
            stepper.cancel()
            for sentence in self.sentences:  # before any await, which a cancelled session never ends
                self.release(sentence)
            # collects the stepper's end; a send to a client that just left fails there, harmlessly
            await asyncio.gather(stepper, return_exceptions=True)
            dropped = self.worker.drop(self)
            self.metrics.dropped.set(self.worker.dropped)
            self.metrics.sessions_active.dec()
            if dropped:
                log.info("client gone: dropped %d queued requests", dropped)

    def working(self) -> bool:
        """Some ended sentence is still being translated (or audio is being transcribed)."""
        if self.audio is not None and self.audio.busy:
            return True
        return any(s.live.ended and not s.failed and not s.live.done for s in self.sentences)

    # -- receiving ----------------------------------------------------------------------------
    def next_index(self) -> int:
        self.count += 1
        return self.count

    async def handle(self, message: dict) -> None:
        if message.get("text") is None:
            self.audio_frame(message.get("bytes") or b"")
            return
        text = message["text"]
        size = len(text.encode("utf-8"))
        if size > self.settings.max_message_bytes:
            raise ProtocolError("too_large", f"message of {size} bytes; the limit is "
                                f"{self.settings.max_message_bytes}")
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError("bad_json", f"malformed JSON: {exc}") from exc
        if not isinstance(msg, dict):
            raise ProtocolError("bad_message", "a message must be a JSON object with a 'type'")
        kind = msg.get("type")
        if kind == "start":
            if msg.get("input", "text") == "audio":
                ready = await self.start_audio(msg)
            else:
                self.start(msg)
                ready = {"type": "ready", **asdict(self.config), "input": "text",
                         "long_form": self.cutter is not None}
                if self.cutter is not None:
                    ready["max_sentence_units"] = self.cutter.max_units
            await self.send(ready)
        elif kind == "source":
            if self.audio is not None:
                raise ProtocolError("bad_input", "this session takes audio (binary PCM frames), not source text; "
                                    "send a start without input audio for text")
            await self.source(msg)
        elif kind == "end":
            if self.audio is not None:
                if self.audio.ended:
                    raise ProtocolError("no_sentence", "the audio has already ended; send a new start")
                self.audio.end()
                return
            self.end()
        else:
            raise ProtocolError("bad_type", f"unknown message type {kind!r} (start, source, end)")
        self.wake.set()

    def start(self, msg: dict) -> None:
        if msg.get("input", "text") != "text":
            raise ProtocolError("bad_input", f"input must be 'text' or 'audio', not {msg.get('input')!r}")
        config = parse_config(msg, self.settings)
        long_form = msg.get("long_form", self.settings.long_form)
        if not isinstance(long_form, bool):
            raise ProtocolError("bad_value", "long_form must be true or false")
        self.config = config
        self.stop_audio()
        self.refusing = False
        # a sentence is cut where the rule says, at the latest when it would pass --max-sentence-words
        most = min(self.settings.max_sentence_units, self.settings.max_sentence_words)
        self.cutter = SentenceCutter(parse_pair(config.pair).source_unit, most) if long_form else None
        for sentence in self.sentences:  # a new start abandons unfinished sentences
            sentence.failed = True
            sentence.live.ended = True
        # their queued step (at most one) still runs; the stepper discards its result
        self.stream_ends.clear()  # and ended long-form streams: no stream_end for them
        self.stream_first, self.stream_done = self.count + 1, 0

    # -- speech ---------------------------------------------------------------------------------
    async def start_audio(self, msg: dict) -> dict:
        """A start with input audio: checked, then Whisper loaded (first time) and a stream opened."""
        rate = msg.get("sample_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE or isinstance(rate, bool):
            raise ProtocolError("bad_rate", f"sample_rate must be {SAMPLE_RATE}: send 16-bit little-endian mono "
                                f"PCM at {SAMPLE_RATE} Hz (resample in the client)")
        config = parse_speech_config(msg, self.settings)
        speech = self.speech
        if speech is None:
            raise ProtocolError("no_speech", "this server takes no audio")
        try:
            whisper = await speech.whisper()
        except SeqpoError as exc:
            raise ProtocolError("no_speech", str(exc)) from exc
        self.stop_audio()  # before counting: a restart replaces this connection's stream
        try:
            speech.acquire()
        except Busy as exc:
            raise ProtocolError("busy", f"{exc}; try again later") from exc
        self.start({k: v for k, v in msg.items() if k not in ("input", "long_form")})  # abandons text ones too
        self.config, self.cutter = config, None  # the ASR's words are cut into sentences by the cascade
        self.audio = AudioStream(self, config, whisper, speech)
        return {"type": "ready", **asdict(config), "input": "audio", "sample_rate": SAMPLE_RATE,
                "max_audio_seconds": self.settings.max_audio_seconds}

    def stop_audio(self) -> None:
        if self.audio is not None:
            self.audio.close()
            self.audio = None

    def audio_frame(self, data: bytes) -> None:
        if self.audio is None:
            raise ProtocolError("binary", "binary frames carry audio: send {\"type\": \"start\", \"input\": "
                                "\"audio\"} first; text sessions take JSON text frames")
        if self.audio.ended:
            raise ProtocolError("binary", "the audio has ended; send a new start for more")
        limit = self.settings.max_audio_frame_bytes
        if len(data) > limit:
            raise ProtocolError("too_large", f"audio frame of {len(data)} bytes; the limit is {limit} "
                                "(send about 0.5 s per frame)")
        if len(data) % 2:
            raise ProtocolError("odd_bytes", f"audio frame of {len(data)} bytes: 16-bit PCM needs an even "
                                "number of bytes")
        seconds = self.settings.max_audio_seconds
        if not self.audio.add(pcm16_to_float(data), round(seconds * 16000)):
            if not self.audio.refused:
                self.audio.refused = True
                raise ProtocolError("too_long", f"more than {seconds:g} s of audio in this session; further "
                                    "audio is ignored: send end, then a new start")

    def open_sentence(self) -> _Sentence | None:
        if self.sentences and not self.sentences[-1].live.ended:
            return self.sentences[-1]
        return None

    async def source(self, msg: dict) -> None:
        if self.config is None:
            raise ProtocolError("no_start", "send {\"type\": \"start\"} before any source text")
        text = msg.get("text")
        if not isinstance(text, str):
            raise ProtocolError("bad_message", "a source message needs a string 'text'")
        if self.cutter is None:
            await self.feed(text)
            return
        # a closing piece and its end reach the stepper together (feed awaits only to send an error),
        # so the sentence's last unit is read as its last, as after a client's end
        for piece, closes in self.cutter.cut(text):
            if piece.strip() or self.refusing or self.open_sentence() is not None:  # no sentence of spaces
                await self.feed(piece)
            if closes:
                self.close_sentence()

    async def feed(self, text: str) -> None:
        """Source text of the open sentence, or of a new one (refused beyond --max-queued-sentences)."""
        if self.refusing:
            return  # the rest of a refused sentence
        sentence = self.open_sentence()
        if sentence is None:
            self.count += 1
            waiting = self.settings.max_queued_sentences
            if len(self.sentences) >= waiting:
                self.refusing = True
                again = "send slower" if self.cutter is not None else "send it again after a done"
                await self.error("busy", f"{len(self.sentences)} sentences of this session are waiting for their "
                                 f"translation (limit {waiting}); sentence dropped, {again}", self.count)
                return
            live = new_episode(self.config, self.settings.max_sentence_words, self.settings.max_sentence_chars)
            sentence = _Sentence(self.count, live, self.config)
            self.sentences.append(sentence)
        if sentence.failed:
            return  # the rest of a dropped sentence
        try:
            sentence.live.feed(text)
        except SentenceTooLongError as exc:
            sentence.failed = True
            await self.error("too_long", f"{exc}; sentence dropped", sentence.index)

    def close_sentence(self) -> bool:
        """The open sentence is complete (the rest of a refused one is over); False if none was open."""
        if self.refusing:
            self.refusing = False
            return True
        sentence = self.open_sentence()
        if sentence is None:
            return False
        sentence.live.end()
        return True

    def end(self) -> None:
        if self.cutter is not None:  # the long-form stream ends, with its open sentence if any
            self.cutter.reset()
            self.close_sentence()
            self.stream_ends.append((self.stream_first, self.count))  # told once its sentences are over
            self.stream_first = self.count + 1
        elif not self.close_sentence():
            raise ProtocolError("no_sentence", "end without a sentence: send source text first")

    # -- stepping -----------------------------------------------------------------------------
    async def _step_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.sentences:
                sentence = self.sentences[0]
                if not sentence.failed:
                    if sentence.row is None:
                        sentence.row = new_row(sentence.config, self.settings.max_sentence_words, self.worker)
                    await self._advance(sentence)
                if sentence.failed and sentence.live.ended:
                    self.sentences.popleft()
                    self.release(sentence)
                elif sentence.live.done:
                    self.sentences.popleft()
                    self.release(sentence)
                    self.metrics.sentences.labels("ws").inc()
                    self.stream_done += 1  # before the send, during which a start may begin a new stream
                    await self.send(done_payload(sentence.index, sentence.live))
                else:
                    break  # waiting for more source
                await self.end_streams()
            await self.end_streams()  # streams that ended with no sentence left to translate

    async def end_streams(self) -> None:
        """A `stream_end` for each ended long-form stream whose sentences are all done or dropped."""
        while self.stream_ends and not (self.sentences and self.sentences[0].index <= self.stream_ends[0][1]):
            first, last = self.stream_ends.popleft()
            done, self.stream_done = self.stream_done, 0
            await self.send({"type": "stream_end", "sentences": done, "dropped": last - first + 1 - done})

    def release(self, sentence: _Sentence) -> None:
        """Free the engine row of a sentence that is done or dropped (append/slots)."""
        if sentence.row is not None:
            self.worker.release(sentence.row)
            sentence.row = None

    async def _advance(self, sentence: _Sentence) -> None:
        try:
            steps = run_due_steps(sentence.live, self.worker, self, self.metrics, sentence.config.adapter,
                                  sentence.row)
            async for step, latency_ms in steps:
                if sentence.failed:  # dropped (restart, too long) while its step ran
                    return
                await self.send(step_payload(sentence.index, sentence.live, step, latency_ms))
        except Exception as exc:  # busy, worker dead, slots region full, the model failed: keep serving
            sentence.failed = True
            await self.fail(exc, sentence.index)
