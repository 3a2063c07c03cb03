"""`seqpo serve` end to end: the real server as a subprocess on the tiny model, spoken to over
WebSocket and HTTP; plus the worker's queueing rules without a server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from websockets.sync.client import connect

from seqpo.requests import Completion, Request
from seqpo.serve.worker import Busy, ModelWorker
from seqpo.stream import append_segment

SENTENCE = "The weather is nice today and we would like a cup of tea."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model_dir: Path, log_dir: Path, *args: str):
    """`python -m seqpo.cli serve` on a free port; yields its base URL once /health answers."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    # one thread unless the run asks for another count (the suite runs with SEQPO_THREADS=1 and 2)
    env = {**os.environ, "SEQPO_THREADS": os.environ.get("SEQPO_THREADS", "1")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seqpo.cli", "serve", "--model", str(model_dir), "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /health in 90 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve"), "--max-sentence-words", "30") as url:
        yield url


class LocalClient(TestClient):
    """Starlette's TestClient as a client on this machine: its requests and WebSockets name
    localhost as their Host (the server refuses other names unless --allow-host allows them)."""

    def __init__(self, app, **kwargs):
        super().__init__(app, base_url="http://localhost", **kwargs)

    def websocket_connect(self, url: str, *args, **kwargs):
        return super().websocket_connect(urljoin("ws://localhost", url), *args, **kwargs)


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws/translate"


def events_until(ws, stop, timeout: float = 60) -> list[dict]:
    """Receive events until `stop(event)` is true (that event included)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        out.append(event)
        if stop(event):
            return out


def speak(ws, sentence: str) -> None:
    words = sentence.split()
    for i, word in enumerate(words):  # word by word, the last one completed by the end message
        ws.send(json.dumps({"type": "source", "text": word + (" " if i < len(words) - 1 else "")}))
    ws.send(json.dumps({"type": "end"}))


def check_sentence(events: list[dict], index: int, sentence: str) -> dict:
    """Steps read 1..n in order, the last finishes, and done.prediction is the writes joined."""
    mine = [e for e in events if e.get("sentence") == index]
    steps, done = mine[:-1], mine[-1]
    assert done["type"] == "done" and done["source"] == sentence
    assert all(e["type"] in ("write", "wait") for e in steps)
    n = len(sentence.split())
    assert [e["read"] for e in steps] == list(range(1, n + 1))
    target = ""
    for e in steps:
        assert e["latency_ms"] >= 0 and e["elapsed_ms"] >= 0
        if e["type"] == "write":
            target = append_segment(target, e["text"], "word")
            assert e["target"] == target
    assert done["prediction"] == target
    assert len(done["delays"]) == len(target.split())
    if target:
        assert done["AL"] is not None and done["LAAL"] >= done["AL"] - 1e-9
    return done


def metric(url: str, name: str, **labels) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_page_and_health(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["queue"] == 0 and health["pair"] == "en-de"
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert "new WebSocket" in httpx.get(f"{server}/static/app.js").text


def test_websocket_two_sentences_in_order(server):
    second = "My sister lives near the sea."
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "pair": "en-de", "policy": "wait-k", "k": 2}))
        ready = json.loads(ws.recv(timeout=10))
        assert ready == {"type": "ready", "pair": "en-de", "policy": "wait-k", "k": 2, "chunk": 1, "few_shot": True,
                         "adapter": None, "input": "text", "long_form": False}
        speak(ws, SENTENCE)
        speak(ws, second)  # sent before the first is done: sentences queue up in order
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
    assert [e["sentence"] for e in events] == sorted(e["sentence"] for e in events)
    first = check_sentence(events, 1, SENTENCE)
    check_sentence(events, 2, second)
    assert [e["type"] for e in events if e["sentence"] == 1][0] == "wait"  # wait-2 waits at read 1
    assert first["delays"] == sorted(first["delays"])


def test_llm_policy_with_pieces_and_chunks(server):
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "policy": "llm", "chunk": 2}))
        assert json.loads(ws.recv(timeout=10))["chunk"] == 2
        for piece in ["The wea", "ther is ni", "ce today"]:  # words split across messages
            ws.send(json.dumps({"type": "source", "text": piece}))
        ws.send(json.dumps({"type": "end"}))
        events = events_until(ws, lambda e: e["type"] == "done")
    assert [e["read"] for e in events[:-1]] == [2, 4, 5]
    assert events[-1]["source"] == "The weather is nice today"


def test_bad_frames_leave_the_connection_usable(server):
    bad = [
        (json.dumps({"type": "source", "text": "hello "}), "no_start"),
        ("{not json", "bad_json"),
        (b"\x00\x01binary", "binary"),
        (json.dumps({"type": "source", "text": "x" * 20000}), "too_large"),
        (json.dumps({"type": "shout"}), "bad_type"),
        (json.dumps(["start"]), "bad_message"),
        (json.dumps({"type": "start", "pair": "en-xx"}), "bad_pair"),
        (json.dumps({"type": "start", "pair": 7}), "bad_pair"),
        (json.dumps({"type": "start", "policy": "guess"}), "bad_policy"),
        (json.dumps({"type": "start", "k": 0}), "bad_value"),
        (json.dumps({"type": "end"}), "no_sentence"),
    ]
    with connect(ws_url(server)) as ws:
        for frame, code in bad:
            ws.send(frame)
            event = json.loads(ws.recv(timeout=10))
            assert event["type"] == "error" and event["code"] == code, (frame[:40], event)
            assert event["message"]
        ws.send(json.dumps({"type": "start", "policy": "offline"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        # too long for --max-sentence-words 30: dropped with one error, the rest of it ignored
        ws.send(json.dumps({"type": "source", "text": "word " * 31}))
        event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["code"], event["sentence"]) == ("error", "too_long", 1)
        ws.send(json.dumps({"type": "source", "text": "more words"}))
        ws.send(json.dumps({"type": "end"}))
        speak(ws, SENTENCE)
        events = events_until(ws, lambda e: e["type"] == "done")
    assert {e["sentence"] for e in events} == {2}
    done = check_sentence(events, 2, SENTENCE)
    assert set(done["delays"]) <= {len(SENTENCE.split())}  # offline writes only at the end


def test_disconnect_mid_sentence_frees_the_session(server):
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "policy": "llm"}))
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "source", "text": "The weather is nice today and we "}))
    # the client is gone mid-sentence: its session and queued work go with it
    deadline = time.monotonic() + 20
    while (health := httpx.get(f"{server}/health").json())["sessions"] or health["queue"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    assert health["status"] == "ok"
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "policy": "wait-k"}))
        ws.recv(timeout=10)
        speak(ws, "one two three")
        events = events_until(ws, lambda e: e["type"] == "done")
    check_sentence(events, 1, "one two three")


def test_post_translate_and_metrics(server):
    before_sent = metric(server, "seqpo_sentences_total", endpoint="http")
    before_steps = metric(server, "seqpo_steps_total", action="write") + metric(server, "seqpo_steps_total",
                                                                                action="wait")
    before_model = metric(server, "seqpo_step_latency_seconds_count")
    before_errors = metric(server, "seqpo_errors_total", code="bad_pair")
    r = httpx.post(f"{server}/translate", json={"text": SENTENCE, "pair": "en-de", "policy": "wait-k"}, timeout=60)
    assert r.status_code == 200
    body = r.json()
    trace = body["trace"]
    assert trace[-1]["type"] == "done" and trace[-1]["prediction"] == body["prediction"]
    check_sentence(trace, 1, SENTENCE)
    assert body["AL"] == trace[-1]["AL"]
    bad = httpx.post(f"{server}/translate", json={"text": "hi", "pair": "en-xx"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_pair"
    assert httpx.post(f"{server}/translate", json={"pair": "en-de"}).status_code == 422
    waits_for_free = sum(1 for e in trace[:-1] if e["type"] == "wait" and e["latency_ms"] < 1)
    assert metric(server, "seqpo_sentences_total", endpoint="http") == before_sent + 1
    after_steps = metric(server, "seqpo_steps_total", action="write") + metric(server, "seqpo_steps_total",
                                                                               action="wait")
    assert after_steps == before_steps + len(trace) - 1
    model_steps = metric(server, "seqpo_step_latency_seconds_count") - before_model
    assert 1 <= model_steps <= len(trace) - 1 - waits_for_free + 1
    assert metric(server, "seqpo_errors_total", code="bad_pair") == before_errors + 1
    assert metric(server, "seqpo_queue_depth") == 0


async def _one_sentence_session(url: str, sentence: str) -> list[dict]:
    from websockets.asyncio.client import connect as aconnect

    async with aconnect(ws_url(url)) as ws:
        await ws.send(json.dumps({"type": "start", "policy": "llm"}))
        await ws.send(json.dumps({"type": "source", "text": sentence}))
        await ws.send(json.dumps({"type": "end"}))
        events = []
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            events.append(event)
            if event["type"] == "done" or event.get("code") == "busy":
                return events


def test_busy_queue_and_idle_timeout(tiny_model_dir, tmp_path):
    args = ("--queue-size", "1", "--batch-size", "1", "--idle-timeout", "2")
    with running_server(tiny_model_dir, tmp_path, *args) as url:

        async def crowd():
            return await asyncio.gather(*[_one_sentence_session(url, SENTENCE) for _ in range(8)])

        results = asyncio.run(crowd())
        busy = [r for r in results if r[-1]["type"] == "error"]
        done = [r for r in results if r[-1]["type"] == "done"]
        assert busy and done and len(busy) + len(done) == 8
        for events in busy:
            assert "busy" in events[-1]["message"] and events[-1]["sentence"] == 1
        assert metric(url, "seqpo_errors_total", code="busy") == len(busy)
        # the crowd is gone: a lone client is served again
        assert asyncio.run(_one_sentence_session(url, "one two three"))[-1]["type"] == "done"

        with connect(ws_url(url)) as ws:
            t0 = time.monotonic()
            event = json.loads(ws.recv(timeout=10))
            assert event["code"] == "idle" and 1.5 < time.monotonic() - t0 < 8
            with pytest.raises(Exception, match="1000"):
                ws.recv(timeout=5)
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


# -- the worker on its own ---------------------------------------------------------------------
class RecordingGenerator:
    def __init__(self):
        self.batches: list[list[str]] = []

    def complete(self, requests: list[Request]) -> list[Completion]:
        self.batches.append([r.prompt for r in requests])
        return [Completion(r.prompt.upper(), 1, 1.0, True) for r in requests]


def test_worker_round_robin_busy_and_drop():
    async def scenario():
        gen = RecordingGenerator()
        worker = ModelWorker(gen, queue_size=5, batch_size=2)
        worker.start()
        a, b, c = object(), object(), object()
        # queued before the worker runs: a has three requests, b one
        tasks = [asyncio.ensure_future(worker.submit(owner, Request("", p)))
                 for owner, p in ((a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (c, "c1"))]
        await asyncio.sleep(0)
        assert worker.pending == 5
        with pytest.raises(Busy, match="limit 5"):
            await worker.submit(b, Request("", "b2"))
        assert worker.drop(c) == 1  # c went away: its request never runs
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await worker.stop()
        return gen.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [["a1", "b1"], ["a2", "a3"]]  # one per session per round
    assert [r.text for r in results[:4]] == ["A1", "A2", "A3", "B1"]
    assert isinstance(results[4], asyncio.CancelledError)


def test_default_adapters_one_per_pair():
    """Bundled model, no --adapter: every shipped adapter, one per pair; an explicit --adapter (or
    none) serves every pair on it."""
    from seqpo.model_names import shipped_adapter_dir
    from seqpo.serve import ServeSettings

    shipped = ServeSettings().shipped_adapters()
    assert shipped == {p: str(shipped_adapter_dir(p)) for p in ("en-de", "en-zh")}
    assert ServeSettings(adapter="none").shipped_adapters() == {}
    assert ServeSettings(adapter=shipped["en-zh"]).shipped_adapters() == {}


def test_sessions_run_on_the_adapter_of_their_pair(tiny_model_dir, tiny_adapters):
    """A server holding per-pair adapters: a session of each pair (WebSocket and POST) gets what a
    model with only its adapter gives; a pair without one runs bare, with few-shot examples."""
    from seqpo.generation import Generator
    from seqpo.requests import NO_ADAPTER
    from seqpo.model import load_model, load_model_adapters
    from seqpo.serve import ServeSettings
    from seqpo.serve.app import create_app
    from seqpo.serve.protocol import parse_config
    from seqpo.serve.steps import new_episode
    from seqpo.driver import step_due
    from seqpo.model_steps import CompleterSteps

    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2)
    multi = load_model_adapters(str(tiny_model_dir), {k: str(v) for k, v in tiny_adapters.items()})
    settings.session_adapters = {"en-de": "en-de", "en-zh": "en-zh"}
    sentence = "The weather is nice today."

    def expected(pair: str) -> str:
        config = parse_config({"pair": pair}, settings)
        adapter = tiny_adapters.get(pair)
        assert config.adapter == (pair if adapter else NO_ADAPTER) and config.few_shot == (adapter is None)
        single = load_model(str(tiny_model_dir), str(adapter) if adapter else None)
        live = new_episode(config, 30)
        live.feed(sentence)
        live.end()
        live.model = CompleterSteps(Generator(single.model, single.tokenizer))
        live.row = live.model.open(live.pair)
        list(step_due(live))
        return live.episode.prediction

    want = {pair: expected(pair) for pair in ("en-de", "en-zh", "de-en")}
    assert len(set(want.values())) == 3  # the adapters make a difference on the tiny model
    with LocalClient(create_app(settings, Generator(multi.model, multi.tokenizer, batch_size=4))) as client:
        assert client.get("/health").json()["adapters"] == {"en-de": "en-de", "en-zh": "en-zh"}
        done = []
        de, zh = client.websocket_connect("/ws/translate"), client.websocket_connect("/ws/translate")
        # TestClient cancels a session still cleaning up after the close: not this test's concern
        with contextlib.suppress(concurrent.futures.CancelledError), de, zh:
            for ws, pair in ((de, "en-de"), (zh, "en-zh")):
                ws.send_text(json.dumps({"type": "start", "pair": pair}))
                ready = json.loads(ws.receive_text())
                assert ready["adapter"] == pair and ready["few_shot"] is False
            for ws in (de, zh):  # both sessions' steps share the worker's batches
                ws.send_text(json.dumps({"type": "source", "text": sentence}))
                ws.send_text(json.dumps({"type": "end"}))
            for ws, pair in ((de, "en-de"), (zh, "en-zh")):
                while (event := json.loads(ws.receive_text()))["type"] != "done":
                    assert event["type"] in ("write", "wait")
                assert event["prediction"] == want[pair]
                done.append(pair)
        assert done == ["en-de", "en-zh"]
        for pair in ("en-zh", "de-en", "en-de"):
            assert client.post("/translate", json={"text": sentence, "pair": pair}).json()["prediction"] == want[pair]


def test_retranslate_steps_are_updates_carrying_the_display(server):
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "policy": "retranslate"}))
        assert json.loads(ws.recv(timeout=10))["policy"] == "retranslate"
        speak(ws, SENTENCE)
        events = events_until(ws, lambda e: e["type"] == "done")
    steps, done = events[:-1], events[-1]
    assert [e["type"] for e in steps] == ["update"] * len(SENTENCE.split())
    assert [e["read"] for e in steps] == list(range(1, len(SENTENCE.split()) + 1))
    assert all(isinstance(e["display"], str) and "text" not in e for e in steps)
    assert done["prediction"] == steps[-1]["display"]  # the last display, not the displays joined
    assert len(done["delays"]) == len(done["prediction"].split())
