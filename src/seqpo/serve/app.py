"""The FastAPI app: routes of the translation server around one shared `ModelWorker`."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Form, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from ..engine import SourceRegionFullError
from ..errors import SeqpoError
from ..generation import Generator
from ..session import SentenceTooLongError
from .connection import Connection, ProtocolError, done_payload, new_episode, new_stream, parse_config, \
    run_due_steps, step_payload
from .audio import SpeechService, translate_upload
from .metrics import ServerMetrics
from .worker import Busy, ModelWorker

STATIC = Path(__file__).parent / "static"


class TranslateBody(BaseModel):
    text: str
    pair: str | None = None
    policy: str | None = None
    k: int | None = None
    chunk: int | None = None


def create_app(settings, generator: Generator, model_name: str = "") -> FastAPI:
    """The app around `generator`'s model; with `settings.decoding` append or slots, sessions run
    on live engines over that model (`seqpo.live_engines`) instead of re-encoding each step."""
    from ..live_engines import EngineSet

    metrics = ServerMetrics()
    decoding = getattr(settings, "decoding", "reencode")
    engines = None if decoding == "reencode" else \
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

    def error_response(status: int, code: str, message: str) -> JSONResponse:
        metrics.errors.labels(code).inc()
        return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        body = {"status": "ok" if worker.alive else "worker stopped", "model": model_name,
                "queue": worker.pending, "sessions": int(metrics.registry.get_sample_value("seqpo_sessions_active")),
                "audio_streams": speech.active, "pair": settings.pair, "policy": settings.policy,
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
            live = new_episode(config, settings.max_sentence_words)
            live.feed(body.text)
        except ProtocolError as exc:
            return error_response(400, exc.code, str(exc))
        except SentenceTooLongError as exc:
            return error_response(400, "too_long", str(exc))
        live.end()
        owner = object()
        trace = []
        stream = new_stream(config, settings.max_sentence_words, worker)
        try:
            async for step, latency_ms in run_due_steps(live, worker, owner, metrics, config.adapter, stream):
                trace.append(step_payload(1, live, step, latency_ms))
        except Busy as exc:
            return error_response(503, "busy", str(exc))
        except SourceRegionFullError as exc:
            return error_response(400, "too_long", str(exc))
        finally:
            worker.drop(owner)
            if stream is not None:
                worker.release(stream)
        metrics.sentences.labels("http").inc()
        done = done_payload(1, live)
        return {**done, "trace": trace + [done]}

    @app.post("/translate/audio")
    async def translate_audio(file: UploadFile, pair: str | None = Form(None), policy: str | None = Form(None),
                              k: int | None = Form(None), chunk: int | None = Form(None)):
        """An uploaded 16 kHz wav through the speech cascade, as `seqpo translate --audio --json`."""
        from ..speech.audio import SAMPLE_RATE, wav_from_bytes

        limit = round(settings.max_audio_seconds * SAMPLE_RATE * 2) + 4096  # 16-bit samples + header
        data = await file.read(limit + 1)
        if len(data) > limit:
            return error_response(413, "too_large", f"upload over {limit} bytes: the limit is "
                                  f"{settings.max_audio_seconds:g} s of 16-bit audio")
        given = {k: v for k, v in {"pair": pair, "policy": policy, "k": k, "chunk": chunk}.items() if v is not None}
        try:
            config = parse_config(given, settings)
        except ProtocolError as exc:
            return error_response(400, exc.code, str(exc))
        if config.pair.split("-")[0] != "en":
            return error_response(400, "bad_pair", f"speech input is English only (Whisper tiny.en); "
                                  f"got pair {config.pair}")
        try:
            samples = wav_from_bytes(data, file.filename or "upload")
        except SeqpoError as exc:
            return error_response(400, "bad_audio", str(exc))
        if len(samples) > settings.max_audio_seconds * SAMPLE_RATE:
            return error_response(413, "too_long", f"{len(samples) / SAMPLE_RATE:.1f} s of audio; the limit is "
                                  f"{settings.max_audio_seconds:g} s")
        try:
            return await translate_upload(samples, config, speech, worker, metrics)
        except Busy as exc:
            return error_response(503, "busy", str(exc))
        except SourceRegionFullError as exc:
            return error_response(400, "too_long", str(exc))
        except SeqpoError as exc:  # the speech extra is missing
            return error_response(503, "no_speech", str(exc))

    @app.websocket("/ws/translate")
    async def ws_translate(ws: WebSocket):
        await ws.accept()
        await Connection(ws, settings, worker, metrics, speech).run()

    return app
