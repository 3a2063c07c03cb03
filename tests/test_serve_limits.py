"""`seqpo serve` under hostile or careless clients: the real server (the CLI as a subprocess, or the
app under uvicorn in this process where a test must stop or break the model) on the tiny model.
Sentence, frame, body, upload, session, request and queue limits; Host and Origin checks; JSON
errors everywhere; a dead model worker fails requests at once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from test_serve import events_until, free_port, metric, running_server, speak, ws_url

ALLOWED = "http://allowed.example:3000"
ALLOWED_HOST = "translate.example"
AUDIO_LIMIT = 2 * 48000 * 2 * 2 + 65536  # --max-audio-seconds 2 of a 48 kHz stereo 16-bit wav + UPLOAD_OVERHEAD


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    args = ("--max-sentence-words", "30", "--max-message-bytes", "1000", "--max-audio-frame-bytes", "4000",
            "--max-audio-seconds", "2", "--max-sessions", "2", "--allow-origin", ALLOWED, "--allow-host", ALLOWED_HOST)
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve-limits"), *args) as url:
        yield url


@contextlib.contextmanager
def serving(app, settings):
    """`app` under uvicorn on a thread of this process, as `seqpo serve` runs it; yields its URL."""
    import uvicorn

    from seqpo.serve import uvicorn_options

    settings.port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def in_process_app(tiny_model_dir, tiny_loaded, **overrides):
    from seqpo.generation import Generator
    from seqpo.serve import ServeSettings
    from seqpo.serve.app import create_app

    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=1, **overrides)
    return create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer)), settings


def raw_http(url: str, request: bytes) -> tuple[int, dict]:
    """Send `request` as it is and read the answer, which may come before the body is complete."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def start(ws, **fields) -> dict:
    ws.send(json.dumps({"type": "start", **fields}))
    ready = json.loads(ws.recv(timeout=30))
    assert ready["type"] == "ready", ready
    return ready


def check_usable(ws, sentence: str = "one two three") -> None:
    speak(ws, sentence)
    done = events_until(ws, lambda e: e["type"] in ("done", "error"))[-1]
    assert done["type"] == "done" and done["source"] == sentence, done


# -- 1. live sentences ---------------------------------------------------------------------------
def test_sentence_without_spaces_or_of_spaces_is_capped_by_characters(server):
    """--max-sentence-words 30 caps a sentence at 480 characters too: text with no spaces (one
    growing word) or only spaces (no word) is dropped as too long instead of growing for ever."""
    with connect(ws_url(server)) as ws:
        start(ws, policy="wait-k")
        for index, piece in ((1, "x" * 300), (2, " " * 300)):
            ws.send(json.dumps({"type": "source", "text": piece}))
            ws.send(json.dumps({"type": "source", "text": piece}))  # 600 characters, under 30 words
            event = json.loads(ws.recv(timeout=30))
            assert (event["type"], event["code"], event["sentence"]) == ("error", "too_long", index), event
            assert "480 characters" in event["message"]
            ws.send(json.dumps({"type": "end"}))
        check_usable(ws)


# -- 2. uploads ----------------------------------------------------------------------------------
def test_upload_refused_while_it_streams_in(server):
    """A body over the limit is answered 413 as soon as the limit is passed (chunked: no length is
    known up front) or at once when its Content-Length is over; the server never waits for the rest."""
    port = urlsplit(server).port
    head = (f"POST /translate/audio HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    body = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    body += b"\0" * (AUDIO_LIMIT + 1 - len(body))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 16384]), body[i : i + 16384])
                      for i in range(0, len(body), 16384))
    status, error = raw_http(server, head + chunks)  # no closing chunk: the rest never comes
    assert status == 413 and error["type"] == "error" and error["code"] == "too_large", error
    assert str(AUDIO_LIMIT) in error["message"]
    for path in ("/translate/audio", "/translate"):  # a length over the limit, and no body at all
        status, error = raw_http(server, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                         "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode())
        assert status == 413 and error["code"] == "too_large", (path, error)


def test_compressed_upload_is_capped_by_duration_and_not_speech_is_bad_audio(server):
    """Ten minutes of FLAC silence fit in a few kB: refused by its duration (from its header, not
    decoded); bytes that are no audio are bad_audio (400), never a speech-service error."""
    soundfile = pytest.importorskip("soundfile")

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(600 * 16000, dtype=np.float32), 16000, format="FLAC")
    assert len(buf.getvalue()) < AUDIO_LIMIT

    def post(name: str, data: bytes, kind: str):
        return httpx.post(f"{server}/translate/audio", files={"file": (name, data, kind)}, timeout=60)

    r = post("long.flac", buf.getvalue(), "audio/flac")
    assert r.status_code == 413 and r.json()["code"] == "too_long"
    assert r.json()["message"] == "long.flac holds more than 2 s of audio; the limit is 2 s"
    for name, data, kind in (("notes.txt", b"Dear diary, today I spoke no words.\n" * 40, "text/plain"),
                             ("noise.wav", np.random.default_rng(0).bytes(20000), "audio/wav")):
        r = post(name, data, kind)
        assert r.status_code == 400 and r.json()["code"] == "bad_audio", (name, r.text)
        assert r.json()["message"].startswith(f"cannot read audio file {name}")


def test_upload_decoding_holds_an_audio_stream(tiny_model_dir, tiny_loaded):
    """Decoding an upload is speech work: with every --max-audio-sessions stream taken it is
    refused as busy before any decoding (which runs on the speech threads, off the event loop)."""
    app, settings = in_process_app(tiny_model_dir, tiny_loaded, max_audio_sessions=1)
    with serving(app, settings) as url:
        app.state.speech.acquire()  # the one stream is in use
        r = httpx.post(f"{url}/translate/audio", files={"file": ("x.wav", b"no audio at all", "audio/wav")})
        assert r.status_code == 503 and r.json()["code"] == "busy", r.text
        app.state.speech.release()
        r = httpx.post(f"{url}/translate/audio", files={"file": ("x.wav", b"no audio at all", "audio/wav")})
        assert r.status_code == 400 and r.json()["code"] == "bad_audio", r.text
        assert app.state.speech.active == 0


def hold_model(worker) -> tuple[threading.Event, threading.Event]:
    """Hold the model: its first step with work sets `entered` and then waits, on the model
    thread, until the test sets `gate` (or 60 s pass)."""
    entered, gate = threading.Event(), threading.Event()
    engine_round = worker._engine_round

    def held_round(batch):
        if batch:
            entered.set()
            gate.wait(60)
        return engine_round(batch)

    worker._engine_round = held_round
    return entered, gate


# -- 3. bounded memory -----------------------------------------------------------------------------
def test_queued_sentences_per_session_and_engine_rows_are_bounded(tiny_model_dir, tiny_loaded):
    """With the model held, a session with --max-queued-sentences (2) sentences waiting refuses
    the next one as busy (its source ignored up to its end) and holds one engine row, not one per
    sentence; once the model runs again every accepted sentence is translated, in order."""
    app, settings = in_process_app(tiny_model_dir, tiny_loaded, decoding="append", max_queued_sentences=2)
    worker = app.state.worker
    entered, gate = hold_model(worker)
    with serving(app, settings) as url, connect(ws_url(url)) as ws:
        start(ws)
        speak(ws, "one two")
        assert entered.wait(30)
        speak(ws, "three four")
        ws.send(json.dumps({"type": "source", "text": "five "}))
        event = json.loads(ws.recv(timeout=30))
        assert (event["type"], event["code"], event["sentence"]) == ("error", "busy", 3), event
        ws.send(json.dumps({"type": "source", "text": "six"}))  # the rest of sentence 3: ignored
        ws.send(json.dumps({"type": "end"}))
        ws.send(json.dumps({"type": "shout"}))  # answered after every message before it was handled
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_type"
        assert worker.engines.open_rows == 1
        gate.set()
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
        speak(ws, "seven eight")
        events += events_until(ws, lambda e: e["type"] == "done")
    done = [e for e in events if e["type"] == "done"]
    assert [(d["sentence"], d["source"]) for d in done] == [(1, "one two"), (2, "three four"), (4, "seven eight")]
    assert not [e for e in events if e["type"] == "error"]


def test_sessions_beyond_the_limit_are_refused_busy(server):
    """--max-sessions 2: a third session gets a busy error and is closed (1013, try again later);
    when one leaves, a new one is served."""
    deadline = time.monotonic() + 30
    while httpx.get(f"{server}/health").json()["sessions"]:  # earlier tests' sessions have closed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with connect(ws_url(server)) as first, connect(ws_url(server)) as second:
        start(first)
        start(second)
        with connect(ws_url(server)) as third:
            event = json.loads(third.recv(timeout=30))
            assert event["type"] == "error" and event["code"] == "busy" and "limit 2" in event["message"]
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=30)
            assert closed.value.rcvd.code == 1013
        check_usable(second)
    deadline = time.monotonic() + 30
    while httpx.get(f"{server}/health").json()["sessions"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with connect(ws_url(server)) as ws:
        start(ws)
        check_usable(ws)


def test_translate_requests_beyond_the_limit_are_refused_busy(tiny_model_dir, tiny_loaded):
    """--max-requests 1: while one POST is being translated (the model held), another POST is
    refused as busy (503) at once, an upload before its body is read; WebSocket sessions have
    their own limit. Once the first is answered, POSTs are served again."""
    app, settings = in_process_app(tiny_model_dir, tiny_loaded, decoding="append", max_requests=1)
    entered, gate = hold_model(app.state.worker)
    with serving(app, settings) as url, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/translate", json={"text": "one two"}, timeout=60)
        assert entered.wait(30)
        assert httpx.get(f"{url}/health").json()["requests"] == 1
        r = httpx.post(f"{url}/translate", json={"text": "three four"}, timeout=30)
        assert r.status_code == 503 and r.json()["code"] == "busy", r.text
        assert "limit 1, --max-requests" in r.json()["message"]
        # an upload announcing 1 MB (under its body limit) whose body never comes: refused at once
        port = urlsplit(url).port
        status, error = raw_http(url, f"POST /translate/audio HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                      "Content-Type: multipart/form-data; boundary=XyZ\r\n"
                                      "Content-Length: 1000000\r\n\r\n".encode())
        assert status == 503 and error["code"] == "busy", error
        with connect(ws_url(url)) as ws:
            start(ws)
        gate.set()
        assert first.result().status_code == 200, first.result().text
        r = httpx.post(f"{url}/translate", json={"text": "three four"}, timeout=60)
        assert r.status_code == 200 and r.json()["source"] == "three four", r.text
        assert httpx.get(f"{url}/health").json()["requests"] == 0


# -- 4. frames and bodies over the limit -----------------------------------------------------------
def test_frames_over_the_larger_limit_close_before_they_are_read(server):
    """--max-message-bytes 1000, --max-audio-frame-bytes 4000: a 2000-byte text frame is a
    too_large error (connection kept); a 5000-byte frame, text or binary, closes it with 1009."""
    for frame in (json.dumps({"type": "source", "text": "y" * 5000}), b"\0" * 5000):
        with connect(ws_url(server)) as ws:
            start(ws)
            ws.send(json.dumps({"type": "source", "text": "y" * 2000}))
            event = json.loads(ws.recv(timeout=30))
            assert event["code"] == "too_large" and "limit is 1000" in event["message"]
            check_usable(ws)
            ws.send(frame)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd.code == 1009


# -- 5. Origin --------------------------------------------------------------------------------------
def test_pages_of_other_origins_are_refused(server):
    """No Origin (a script), the server's own origin and --allow-origin are served; a page of
    another site (or another port of this host, or a sandboxed page) can neither open a session
    nor POST."""
    port = urlsplit(server).port
    for origin in (None, f"http://127.0.0.1:{port}", ALLOWED):
        with connect(ws_url(server), origin=origin) as ws:
            start(ws)
        headers = {"Origin": origin} if origin else {}
        r = httpx.post(f"{server}/translate", json={"text": "one two", "policy": "wait-k"}, headers=headers,
                       timeout=60)
        assert r.status_code == 200 and r.json()["type"] == "done", (origin, r.text)
    r = httpx.post(f"{server}/translate", json={"text": "one"}, headers={"Origin": ALLOWED})
    assert r.headers["access-control-allow-origin"] == ALLOWED  # its page may read the answer
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server), origin=origin)
        assert refused.value.response.status_code == 403
        for path in ("/translate", "/translate/audio"):
            r = httpx.post(f"{server}{path}", json={"text": "one"}, headers={"Origin": origin})
            assert r.status_code == 403 and r.json()["code"] == "origin", (origin, path, r.text)
    assert httpx.get(f"{server}/health", headers={"Origin": "http://evil.example"}).status_code == 200


# -- 6. Host (DNS rebinding) ------------------------------------------------------------------------
def host_socket(url: str, host: str):
    """A WebSocket to the server at `url` whose handshake names `host` (as a page of a rebound name would)."""
    port = urlsplit(url).port
    return connect(f"ws://{host}/ws/translate", sock=socket.create_connection(("127.0.0.1", port), timeout=30))


def test_other_host_names_are_refused(server):
    """Loopback names, the bound address (any port) and --allow-host names are served; a request
    naming another host (a hostile page whose name was made to resolve to 127.0.0.1: its Origin
    matches its Host) is refused with 421 `host`, naming the host and the flag; so is its WebSocket."""
    port = urlsplit(server).port
    for host in (f"localhost:{port}", "LOCALHOST", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}", ALLOWED_HOST,
                 f"Translate.Example:{port + 1}"):
        r = httpx.get(f"{server}/health", headers={"Host": host})
        assert r.status_code == 200, (host, r.text)
    with host_socket(server, f"{ALLOWED_HOST}:{port}") as ws:
        start(ws)
    before = metric(server, "seqpo_errors_total", code="host")
    for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example", f"sub.{ALLOWED_HOST}"):
        rebound = {"Host": host, "Origin": f"http://{host}"}
        for method, path in (("GET", "/health"), ("GET", "/"), ("POST", "/translate")):
            r = httpx.request(method, f"{server}{path}", headers=rebound, json={"text": "one"}, timeout=30)
            assert r.status_code == 421, (host, path, r.text)
            error = r.json()
            assert error["type"] == "error" and error["code"] == "host", error
            assert host in error["message"] and "--allow-host" in error["message"], error
        with pytest.raises(InvalidStatus) as refused:
            host_socket(server, host)
        assert refused.value.response.status_code == 403
    assert metric(server, "seqpo_errors_total", code="host") == before + 4 * 4


def test_host_names_and_the_bound_address(tiny_model_dir, tiny_loaded):
    """The names served: loopback, --host (the address bound to) and --allow-host, matched without
    their port; a name with a port or scheme is a settings error, before any model is loaded."""
    from starlette.testclient import TestClient

    from seqpo.cli import main
    from seqpo.errors import SettingsError
    from seqpo.serve.admission import host_names

    assert host_names("0.0.0.0", ["Example.COM", "::1", "*.lan"]) == (
        "localhost", "127.0.0.1", "[::1]", "0.0.0.0", "example.com", "*.lan")
    assert host_names("::", ["fe80::1"])[3:] == ("[::]", "[fe80::1]")
    for bad in ("example.com:8000", "http://example.com", "a*b", ""):
        with pytest.raises(SettingsError, match="without scheme or port"):
            host_names("127.0.0.1", [bad])
    assert main(["serve", "--model", "/nonexistent", "--allow-host", "example.com:8000"]) == 2
    app, _settings = in_process_app(tiny_model_dir, tiny_loaded, host="10.1.2.3", allow_host=["*.lan"])
    with TestClient(app) as client:
        for base, status in (("http://10.1.2.3:8000", 200), ("http://10.1.2.3", 200), ("http://box.lan", 200),
                             ("http://localhost", 200), ("http://10.1.2.4:8000", 421), ("http://lan", 421)):
            assert client.get(f"{base}/health").status_code == status, base


# -- 7. errors ------------------------------------------------------------------------------------
def test_errors_are_json_everywhere(server):
    for method, path, kwargs, status, code in (
            ("GET", "/nowhere", {}, 404, "not_found"),
            ("GET", "/translate", {}, 405, "bad_method"),
            ("POST", "/translate", {"json": {"pair": "en-de"}}, 422, "bad_request"),
            ("POST", "/translate", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 422,
             "bad_request"),
            ("POST", "/translate/audio", {"data": {"pair": "en-de"}}, 422, "bad_request")):
        r = httpx.request(method, f"{server}{path}", timeout=30, **kwargs)
        assert r.status_code == status, (path, r.text)
        body = r.json()
        assert body["type"] == "error" and body["code"] == code and body["message"], body


@pytest.mark.parametrize("decoding", ["reencode", "cached"])
def test_model_failure_and_dead_worker_fail_fast(tiny_model_dir, tiny_loaded, decoding):
    """A failed model call is a JSON `model` error (500); a worker that died fails every request at
    once with `worker` (503, WebSocket error event), and /health says it is dead. Both worker loops:
    a Generator per batch (reencode) and the live engines' rounds (cached, the default)."""
    app, settings = in_process_app(tiny_model_dir, tiny_loaded, decoding=decoding)
    worker = app.state.worker
    call = "_model_call" if worker.engines is None else "_engine_round"  # where the model runs

    def failing_model_call(batch):
        raise RuntimeError("CUDA out of memory (simulated)")

    def broken_worker(size):
        raise RuntimeError("a bug in the worker (simulated)")

    with serving(app, settings) as url:
        model_call = getattr(worker, call)
        setattr(worker, call, failing_model_call)
        r = httpx.post(f"{url}/translate", json={"text": "one two"}, timeout=30)
        assert r.status_code == 500 and r.json()["code"] == "model" and "out of memory" in r.json()["message"]
        setattr(worker, call, model_call)
        assert httpx.post(f"{url}/translate", json={"text": "one two"}, timeout=30).status_code == 200
        assert httpx.get(f"{url}/health").json()["worker"] == "ok"

        worker.on_batch = broken_worker
        r = httpx.post(f"{url}/translate", json={"text": "one two"}, timeout=30)  # was waiting as it died
        assert r.status_code == 503 and r.json()["code"] == "worker" and "simulated" in r.json()["message"]
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["worker"] == "dead"
        r = httpx.post(f"{url}/translate", json={"text": "one two"}, timeout=30)
        assert r.status_code == 503 and r.json()["code"] == "worker"
        with connect(ws_url(url)) as ws:
            start(ws)
            speak(ws, "one two")
            event = json.loads(ws.recv(timeout=30))
            assert (event["type"], event["code"], event["sentence"]) == ("error", "worker", 1), event
