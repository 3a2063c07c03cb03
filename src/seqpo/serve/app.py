"""The FastAPI app: routes of the translation server around one shared `ModelWorker`."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from ..generation import Generator
from ..session import SentenceTooLongError
from .connection import Connection, ProtocolError, done_payload, new_episode, parse_config, run_due_steps, \
    step_payload
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
    metrics = ServerMetrics()
    worker = ModelWorker(generator, queue_size=settings.queue_size, batch_size=settings.batch_size,
                         on_batch=metrics.batch_size.observe)

    @asynccontextmanager
    async def lifespan(_app):
        worker.start()
        yield
        await worker.stop()

    app = FastAPI(title="seqpo", summary="simultaneous machine translation", lifespan=lifespan)
    app.state.worker, app.state.metrics, app.state.settings = worker, metrics, settings

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
                "pair": settings.pair, "policy": settings.policy}
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
        try:
            async for step, latency_ms in run_due_steps(live, worker, owner, metrics):
                trace.append(step_payload(1, live, step, latency_ms))
        except Busy as exc:
            return error_response(503, "busy", str(exc))
        finally:
            worker.drop(owner)
        metrics.sentences.labels("http").inc()
        done = done_payload(1, live)
        return {**done, "trace": trace + [done]}

    @app.websocket("/ws/translate")
    async def ws_translate(ws: WebSocket):
        await ws.accept()
        await Connection(ws, settings, worker, metrics).run()

    return app
