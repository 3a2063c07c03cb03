"""The FastAPI app: routes of the translation server around one shared `ModelWorker`.

Every error, from a route or not (unknown path, invalid body, a bug), is the protocol's error
object `{"type": "error", "code", "message"}` with an HTTP status: 400 bad input (bad_pair,
bad_policy, bad_value, bad_audio, too_long), 403 origin, 404 not_found, 405 bad_method, 413
too_large / too_long (audio), 421 host, 422 bad_request (body fails the schema), 500 model /
internal, 503 busy, no_speech, worker (the model worker has stopped; /health says so too).
A translation that fails once accepted is told as `failures.failure_of` says, as on the WebSocket.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Form, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from ..engine import REFERENCE_MODE, engine_class
from ..errors import InputFileError, MissingExtraError
from ..generation import Generator
from ..driver import SentenceTooLongError
from ..live_engines import EngineSet, uses_own_cache
from ..speech.audio import AudioTooLongError
from .admission import BodyLimit, HostCheck, Limit, OpenLimit, OriginCheck, host_names
from .connection import Connection
from .protocol import ProtocolError, done_payload, parse_config, parse_speech_config, step_payload
from .steps import new_episode, new_row, run_due_steps
from .audio import SpeechService, translate_upload
from .failures import failure_of
from .metrics import ServerMetrics
from .worker import ModelWorker

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HTTP_CODES = {404: "not_found", 405: "bad_method", 413: "too_large"}
# upload bodies: any format and rate is decoded (and held to --max-audio-seconds while decoding),
# so the body limit only has to admit the largest usual file of that length: an uncompressed
# 48 kHz stereo 16-bit WAV (a recorder's, a browser's); FLAC, MP3, Opus are far smaller. Plus the
# file's header and the multipart form around it.
UPLOAD_BYTES_PER_SECOND = 48000 * 2 * 2
UPLOAD_OVERHEAD = 65536


class TranslateBody(BaseModel):
    text: str
    pair: str | None = None
    policy: str | None = None
    k: int | None = None
    chunk: int | None = None


def create_app(settings, generator: Generator, model_name: str = "") -> FastAPI:
    """The app around `generator`'s model; with `settings.decoding` append or slots, sessions run
    on live engines over that model (`seqpo.live_engines`) instead of re-encoding each step."""
    metrics = ServerMetrics()
    decoding = getattr(settings, "decoding", REFERENCE_MODE)
    engines = None if not engine_class(decoding).keeps_cache or uses_own_cache(generator) else \
        EngineSet(generator.model, generator.tokenizer, decoding, settings.slot)
    worker = ModelWorker(generator, queue_size=settings.queue_size, batch_size=settings.batch_size,
                         on_batch=metrics.batch_size.observe, engines=engines)
    speech = SpeechService(settings)

    @asynccontextmanager
    async def lifespan(_app):
        worker.start()
        yield
        await worker.stop()
        speech.shutdown()

    app = FastAPI(title="seqpo", summary="simultaneous machine translation", lifespan=lifespan)
    app.state.worker, app.state.metrics, app.state.settings = worker, metrics, settings
    app.state.speech = speech
    sessions = Limit("WebSocket sessions", "--max-sessions", settings.max_sessions)
    requests = Limit("translate requests", "--max-requests", settings.max_requests)
    app.state.limits = {("websocket", "/ws/translate"): sessions, ("http", "/translate"): requests,
                        ("http", "/translate/audio"): requests}

    def error_response(status: int, code: str, message: str) -> JSONResponse:
        metrics.errors.labels(code).inc()
        return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)

    def failure_response(exc: Exception) -> JSONResponse:
        """The answer to an accepted translation that failed (both POST routes)."""
        failure = failure_of(exc)
        return error_response(failure.status, failure.code, failure.message)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return error_response(exc.status_code, HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
                              str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, "bad_request", problems or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):  # a bug: still an answer in the protocol's form
        log.error("request failed", exc_info=exc)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")

    def json_limit(path: str) -> int:
        if path == "/translate/audio":
            return round(settings.max_audio_seconds * UPLOAD_BYTES_PER_SECOND) + UPLOAD_OVERHEAD
        return 6 * settings.max_message_bytes + 1024  # JSON escapes take up to 6 bytes per byte of text

    def refused(code: str) -> None:
        metrics.errors.labels(code).inc()

    # outermost last: Host first, then Origin, then how many are open, then the body's size
    app.add_middleware(BodyLimit, limit=json_limit, on_refused=refused)
    app.add_middleware(OpenLimit, limits=app.state.limits, on_refused=refused)
    allowed = tuple(getattr(settings, "allow_origin", ()) or ())
    if allowed:  # lets the pages of those origins read the answers of their POSTs (busy ones too)
        app.add_middleware(CORSMiddleware, allow_origins=list(allowed), allow_methods=["GET", "POST"],
                           allow_headers=["*"])
    app.add_middleware(OriginCheck, allowed=allowed, on_refused=refused)
    app.add_middleware(HostCheck, names=host_names(settings.host, settings.allow_host), on_refused=refused)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        body = {"status": "ok" if worker.alive else f"worker {worker.state}", "worker": worker.state,
                "model": model_name,
                "queue": worker.pending, "sessions": int(metrics.registry.get_sample_value("seqpo_sessions_active")),
                "requests": requests.open,
                "audio_streams": speech.active, "pair": settings.pair, "policy": settings.policy,
                "asr_lag_ms": max(speech.lags_ms(), default=0.0), "asr_lags_ms": speech.lags_ms(),
                "decoding": decoding,
                "adapters": dict(getattr(settings, "session_adapters", {}))}
        return JSONResponse(body, status_code=200 if worker.alive else 503)

    @app.get("/metrics")
    async def prometheus():
        metrics.queue_depth.set(worker.pending)
        metrics.dropped.set(worker.dropped)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/translate")
    async def translate(body: TranslateBody):
        """One whole sentence, stepped like a live one; returns every event and the result."""
        size = len(body.text.encode("utf-8"))
        if size > settings.max_message_bytes:
            return error_response(413, "too_large", f"text of {size} bytes; the limit is {settings.max_message_bytes}")
        given = {k: v for k, v in body.model_dump().items() if v is not None and k != "text"}
        try:
            config = parse_config(given, settings)
            live = new_episode(config, settings.max_sentence_words, settings.max_sentence_chars)
            live.feed(body.text)
        except ProtocolError as exc:
            return error_response(400, exc.code, str(exc))
        except SentenceTooLongError as exc:
            return error_response(400, "too_long", str(exc))
        live.end()
        owner = object()
        trace = []
        row = new_row(config, settings.max_sentence_words, worker)
        try:
            async for step, latency_ms in run_due_steps(live, worker, owner, metrics, config.adapter, row):
                trace.append(step_payload(1, live, step, latency_ms))
        except Exception as exc:
            return failure_response(exc)
        finally:
            worker.drop(owner)
            if row is not None:
                worker.release(row)
        metrics.sentences.labels("http").inc()
        done = done_payload(1, live)
        return {**done, "trace": trace + [done]}

    @app.post("/translate/audio")
    async def translate_audio(file: UploadFile, pair: str | None = Form(None), policy: str | None = Form(None),
                              k: int | None = Form(None), chunk: int | None = Form(None)):
        """An uploaded recording (any format and rate PyAV reads) through the speech cascade, as
        `seqpo translate --audio --json`."""
        data = await file.read()  # BodyLimit has held it to the limit
        given = {k: v for k, v in {"pair": pair, "policy": policy, "k": k, "chunk": chunk}.items() if v is not None}
        try:
            config = parse_speech_config(given, settings)
        except ProtocolError as exc:
            return error_response(400, exc.code, str(exc))
        try:
            return await translate_upload(data, file.filename or "upload", config, speech, worker, metrics)
        except AudioTooLongError as exc:
            return error_response(413, "too_long", f"{exc}; the limit is {settings.max_audio_seconds:g} s")
        except InputFileError as exc:  # not audio, empty
            return error_response(400, "bad_audio", str(exc))
        except MissingExtraError as exc:  # the speech extra is missing
            return error_response(503, "no_speech", str(exc))
        except Exception as exc:
            return failure_response(exc)

    @app.websocket("/ws/translate")
    async def ws_translate(ws: WebSocket):  # within --max-sessions (OpenLimit)
        await ws.accept()
        await Connection(ws, settings, worker, metrics, speech).run()

    return app
