"""`seqpo serve --decoding append|slots`: live sessions (WebSocket, POST, audio upload) run on the
streaming engine and translate exactly as `run_episodes` (or the CLI) with an engine of the same
mode; a sentence that outgrows its slots region is dropped as too long, the connection kept."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time

import pytest

from seqpo.engine import engine_for
from seqpo.generation import Generator
from seqpo.languages import parse_pair
from seqpo.policies import make_policy
from seqpo.serve import ServeSettings
from seqpo.serve.app import create_app
from seqpo.serve.protocol import parse_config
from seqpo.simulate import run_episodes

from test_serve import LocalClient

SENTENCE = "The weather is nice today and we would like a cup of tea."


def speak(ws, sentence: str) -> None:
    words = sentence.split()
    for i, word in enumerate(words):  # word by word, the last one completed by the end message
        ws.send_text(json.dumps({"type": "source", "text": word + (" " if i < len(words) - 1 else "")}))
    ws.send_text(json.dumps({"type": "end"}))


def until(ws, stop) -> list[dict]:
    events = []
    while True:
        events.append(json.loads(ws.receive_text()))
        if stop(events[-1]):
            return events


def steps_of(events: list[dict], sentence: int) -> list[tuple[int, str]]:
    return [(e["read"], e.get("text", "")) for e in events if e.get("sentence") == sentence
            and e["type"] in ("write", "wait")]


def offline(loaded, settings, pair: str, sentence: str):
    """The sentence through `run_episodes` on an engine of the server's mode, with the session's
    policy settings and few-shot choice (on `loaded`: the model the session's adapter makes)."""
    config = parse_config({"pair": pair}, settings)
    engine = engine_for(loaded.model, loaded.tokenizer, settings.decoding, settings.slot,
                        few_shot=config.few_shot)
    policy = make_policy(config.policy, k=config.k, chunk=config.chunk, few_shot=config.few_shot)
    return run_episodes([(0, sentence)], policy, engine, parse_pair(pair), config.chunk)[0]


def rows_freed(app, timeout: float = 10) -> bool:
    """Every live sentence's engine row is released (the worker frees them on its thread)."""
    engines = app.state.worker.engines
    deadline = time.monotonic() + timeout
    while engines.open_rows or any(e.rows for e in engines.engines.values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("decoding, slot", [("append", 16), ("slots", 128), ("cached", 16)])
def test_session_equals_run_episodes(tiny_model_dir, tiny_loaded, decoding, slot):
    # slots: one 128-token slot holds the live reserve (30 words x 4 tokens) and the sentence's
    # own tokens alike, so the live and the offline episode put the target at the same positions
    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="llm", decoding=decoding, slot=slot,
                             max_sentence_words=30)
    want = offline(tiny_loaded, settings, "en-de", SENTENCE)
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    with LocalClient(app) as client:
        assert client.get("/health").json()["decoding"] == decoding
        with contextlib.suppress(concurrent.futures.CancelledError), client.websocket_connect("/ws/translate") as ws:
            ws.send_text(json.dumps({"type": "start"}))
            assert json.loads(ws.receive_text())["type"] == "ready"
            speak(ws, SENTENCE)
            speak(ws, SENTENCE)  # a second sentence on the same connection: a fresh episode
            events = until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
        done = [e for e in events if e["type"] == "done"]
        for index in (1, 2):
            assert steps_of(events, index) == [(s.read, s.written) for s in want.steps]
            assert done[index - 1]["prediction"] == want.prediction != ""
        body = client.post("/translate", json={"text": SENTENCE}).json()
        assert body["prediction"] == want.prediction
        assert list(app.state.worker.engines.engines) == [(parse_pair("en-de"), None, True)]
        assert rows_freed(app)


def test_concurrent_sessions_of_different_pairs(tiny_model_dir, tiny_adapters):
    """Append mode with per-pair adapters: each pair's sessions get an engine of their own, run on
    their adapter (or the bare model), and match an offline run on a model with only that adapter."""
    from seqpo.model import load_model, load_model_adapters

    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="append")
    multi = load_model_adapters(str(tiny_model_dir), {k: str(v) for k, v in tiny_adapters.items()})
    settings.session_adapters = {"en-de": "en-de", "en-zh": "en-zh"}
    pairs = ("en-de", "en-zh", "de-en")
    want = {}
    for pair in pairs:
        adapter = tiny_adapters.get(pair)
        want[pair] = offline(load_model(str(tiny_model_dir), str(adapter) if adapter else None), settings, pair,
                             SENTENCE)
    assert len({w.prediction for w in want.values()}) == 3  # the adapters make a difference
    app = create_app(settings, Generator(multi.model, multi.tokenizer, batch_size=4))
    with LocalClient(app) as client:
        sockets = [client.websocket_connect("/ws/translate") for _ in pairs]
        with contextlib.suppress(concurrent.futures.CancelledError), contextlib.ExitStack() as stack:
            for ws, pair in zip(sockets, pairs):
                stack.enter_context(ws)
                ws.send_text(json.dumps({"type": "start", "pair": pair}))
                assert json.loads(ws.receive_text())["pair"] == pair
            for ws in sockets:  # all sessions stream at once: their steps share the worker's batches
                speak(ws, SENTENCE)
            for ws, pair in zip(sockets, pairs):
                events = until(ws, lambda e: e["type"] in ("done", "error"))
                assert events[-1]["type"] == "done", events[-1]
                assert steps_of(events, 1) == [(s.read, s.written) for s in want[pair].steps]
                assert events[-1]["prediction"] == want[pair].prediction
        engines = app.state.worker.engines.engines
        assert {(str(p), a) for p, a, _ in engines} == {("en-de", "en-de"), ("en-zh", "en-zh"), ("de-en", "none")}
        assert rows_freed(app)


def test_sentence_outgrowing_its_slots_region_is_too_long(tiny_model_dir, tiny_loaded):
    # 8 words reserve 32 source tokens (one 32-token slot); the nonsense words take more
    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="slots", slot=32,
                             max_sentence_words=8)
    nonsense = "Qzxjvw vwkqzj jqpfxz zxqvwk wkjqfz fzvxqw qwkzjx jxvfqz"
    second = "My sister lives near the sea."
    want = offline(tiny_loaded, settings, "en-de", second)
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    with LocalClient(app) as client:
        with contextlib.suppress(concurrent.futures.CancelledError), client.websocket_connect("/ws/translate") as ws:
            ws.send_text(json.dumps({"type": "start"}))
            json.loads(ws.receive_text())
            speak(ws, nonsense)
            events = until(ws, lambda e: e["type"] in ("error", "done"))
            assert (events[-1]["type"], events[-1]["code"], events[-1]["sentence"]) == ("error", "too_long", 1)
            assert "region" in events[-1]["message"]
            speak(ws, second)
            events = until(ws, lambda e: e["type"] in ("error", "done"))
        assert events[-1]["type"] == "done" and events[-1]["sentence"] == 2
        assert steps_of(events, 2) == [(s.read, s.written) for s in want.steps]
        assert events[-1]["prediction"] == want.prediction
        r = client.post("/translate", json={"text": nonsense})
        assert r.status_code == 400 and r.json()["code"] == "too_long"
        assert rows_freed(app)


def test_audio_upload_in_append_mode_matches_the_cli(tiny_model_dir, tiny_loaded, tmp_path, capsys):
    pytest.importorskip("faster_whisper", reason="speech input needs the speech extra")
    from seqpo.cli import main
    from seqpo.speech.synth import synthesize, write_wav

    wav = tmp_path / "clip.wav"
    write_wav(wav, synthesize("Thank you very much. I would like a cup of tea."))
    assert main(["translate", "--audio", str(wav), "--pair", "en-de", "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--k", "2", "--decoding", "append", "--json"]) == 0
    cli = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="append")
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    with LocalClient(app) as client, open(wav, "rb") as f:
        body = client.post("/translate/audio", files={"file": ("clip.wav", f, "audio/wav")}).json()
        assert list(app.state.worker.engines.engines) == [(parse_pair("en-de"), None, True)]
        assert rows_freed(app)
    timing = ("sentence", "latency_ms", "elapsed_ms")
    trace = [{k: v for k, v in e.items() if k not in timing and not k.endswith("_CA")}
             for e in body["trace"] if e["type"] != "word"]
    assert trace == [{k: v for k, v in e.items() if k not in timing and not k.endswith("_CA")} for e in cli]
    assert len(body["sentences"]) == 2 and any(e["type"] == "write" for e in cli)


def test_ws_audio_session_in_slots_mode(tiny_model_dir, tiny_loaded, tmp_path):
    pytest.importorskip("faster_whisper", reason="speech input needs the speech extra")
    import soundfile

    from seqpo.speech.synth import synthesize, write_wav

    wav = tmp_path / "clip.wav"
    write_wav(wav, synthesize("Thank you very much. I would like a cup of tea."))
    data, _ = soundfile.read(str(wav), dtype="int16")
    pcm = data.astype("<i2").tobytes()
    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="slots",
                             max_sentence_words=30)
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    with LocalClient(app) as client:
        with contextlib.suppress(concurrent.futures.CancelledError), client.websocket_connect("/ws/translate") as ws:
            ws.send_text(json.dumps({"type": "start", "input": "audio"}))
            assert json.loads(ws.receive_text())["input"] == "audio"
            for i in range(0, len(pcm), 16000):
                ws.send_bytes(pcm[i : i + 16000])
            ws.send_text(json.dumps({"type": "end"}))
            events = until(ws, lambda e: e["type"] in ("audio_end", "error"))
        assert events[-1]["type"] == "audio_end", events[-1]
        done = [e for e in events if e["type"] == "done"]
        assert len(done) == events[-1]["sentences"] >= 1
        for d in done:
            writes = [e["text"] for e in events if e.get("sentence") == d["sentence"] and e["type"] == "write"]
            assert " ".join(writes) == d["prediction"] != ""
        assert list(app.state.worker.engines.engines) == [(parse_pair("en-de"), None, True)]
        assert rows_freed(app)


def test_abandoned_sentences_free_their_rows(tiny_model_dir, tiny_loaded):
    """A restart mid-sentence and a client leaving mid-sentence release their engine episodes."""
    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="llm", decoding="append")
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    with LocalClient(app) as client:
        with contextlib.suppress(concurrent.futures.CancelledError), client.websocket_connect("/ws/translate") as ws:
            ws.send_text(json.dumps({"type": "start"}))
            json.loads(ws.receive_text())
            ws.send_text(json.dumps({"type": "source", "text": "The weather is "}))
            until(ws, lambda e: e["type"] in ("write", "wait") and e["read"] == 2)
            ws.send_text(json.dumps({"type": "start", "pair": "en-zh"}))  # abandons sentence 1
            until(ws, lambda e: e["type"] == "ready")
            ws.send_text(json.dumps({"type": "source", "text": "Our team released "}))
            until(ws, lambda e: e["type"] in ("write", "wait") and e["read"] == 2)
        assert rows_freed(app)  # the client left with sentence 2 open
        engines = app.state.worker.engines.engines
        assert {str(pair) for pair, _, _ in engines} == {"en-de", "en-zh"}


def test_cli_server_with_slots_decoding(tiny_model_dir, tiny_loaded, tmp_path):
    """`seqpo serve --decoding slots` (the real command, a subprocess) serves a WebSocket session."""
    import httpx
    from websockets.sync.client import connect

    from test_serve import running_server, ws_url

    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="slots",
                             slot=128, max_sentence_words=30)
    want = offline(tiny_loaded, settings, "en-de", SENTENCE)
    with running_server(tiny_model_dir, tmp_path, "--decoding", "slots", "--slot", "128", "--policy", "wait-k",
                        "--k", "2", "--max-sentence-words", "30") as url:
        assert httpx.get(f"{url}/health").json()["decoding"] == "slots"
        with connect(ws_url(url)) as ws:
            ws.send(json.dumps({"type": "start"}))
            json.loads(ws.recv(timeout=30))
            words = SENTENCE.split()
            for i, word in enumerate(words):
                ws.send(json.dumps({"type": "source", "text": word + (" " if i < len(words) - 1 else "")}))
            ws.send(json.dumps({"type": "end"}))
            while (event := json.loads(ws.recv(timeout=60)))["type"] != "done":
                assert event["type"] in ("write", "wait"), event
        assert event["prediction"] == want.prediction
