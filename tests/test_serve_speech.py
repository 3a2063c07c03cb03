"""Speech input of `seqpo serve`: the real server (tiny random text model, the real Whisper tiny.en)
fed real espeak-ng speech as binary WebSocket frames and as an uploaded wav."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from heard import CLIP, SENTENCE_WER, THANKS, assert_clip_heard, assert_heard
from test_serve import events_until, running_server, ws_url

pytest.importorskip("faster_whisper", reason="speech input needs the speech extra")

FRAME = 16000  # bytes: 0.5 s of 16 kHz 16-bit mono PCM


@pytest.fixture(scope="module")
def clip_wav(tmp_path_factory):
    from seqpo.speech.synth import synthesize, write_wav

    path = tmp_path_factory.mktemp("speech") / "clip.wav"
    write_wav(path, synthesize(CLIP))
    return path


def pcm_bytes(path) -> bytes:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 16000
    return data.astype("<i2").tobytes()


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    # frames up to the larger limit (64 kB) are read: a 40 kB audio frame is a too_large error, not a close
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve-speech"), "--max-audio-seconds", "8",
                        "--max-audio-frame-bytes", "32000", "--max-message-bytes", "65536",
                        "--asr-every-frame") as url:  # one decode per frame: what Whisper hears is the same under any load
        yield url


def stream_clip(ws, pcm: bytes, pause: float = 0.2) -> None:
    for i in range(0, len(pcm), FRAME):
        ws.send(pcm[i : i + FRAME])
        time.sleep(pause)
    ws.send(json.dumps({"type": "end"}))


def test_ws_audio_stream(server, clip_wav):
    pcm = pcm_bytes(clip_wav)
    audio_ms = len(pcm) / 32.0
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 16000, "pair": "en-de",
                            "policy": "wait-k", "k": 2}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["input"] == "audio" and ready["sample_rate"] == 16000
        stream_clip(ws, pcm, pause=0.0)  # --asr-every-frame: the pace does not change what is decoded
        events = events_until(ws, lambda e: e["type"] == "audio_end", timeout=120)
    why = json.dumps(events, ensure_ascii=False)[:4000]
    assert not [e for e in events if e["type"] == "error"], why
    end = events[-1]
    done = [e for e in events if e["type"] == "done"]
    assert end["audio_ms"] == pytest.approx(audio_ms, abs=1) and end["sentences"] == len(done) >= 1, why
    assert_clip_heard(end["transcript"], why)
    words = [e for e in events if e["type"] == "word"]
    assert " ".join(w["text"] for w in words) == end["transcript"]
    known = [w["known_ms"] for w in words]
    assert known == sorted(known) and known[0] >= 1000.0, why
    # the ASR lag: audio sent but not yet transcribed (all of it was sent at once here)
    assert all(0.0 <= w["asr_lag_ms"] <= audio_ms for w in words), why
    health = httpx.get(f"{server}/health").json()
    assert health["asr_lag_ms"] == 0.0 and health["asr_lags_ms"] == [], health  # the stream has ended
    assert min(known) < audio_ms, why  # stable before the audio ended: streaming, not one decode at the end
    assert [d["sentence"] for d in done] == list(range(1, len(done) + 1))
    assert_heard(done[0]["source"], THANKS, SENTENCE_WER, why)
    for d in done:
        mine = [e for e in events if e.get("sentence") == d["sentence"]]
        steps = [e for e in mine if e["type"] in ("write", "wait")]
        # each stable word is a read, the word event comes before the step that reads it
        assert [e["read"] for e in steps] == list(range(1, len(steps) + 1)), why
        assert len(steps) == len([e for e in mine if e["type"] == "word"]) == len(d["source"].split()), why
        assert all(e["audio_ms"] >= 1000.0 and e["latency_ms"] >= 0 for e in steps)
        writes = [e for e in steps if e["type"] == "write"]
        assert " ".join(e["text"] for e in writes) == d["prediction"]
        assert d["latency_unit"] == "ms"
        if writes:
            assert d["StartOffset"] == pytest.approx(writes[0]["audio_ms"] - d["audio_span"][0], abs=0.2)
    for a, b in zip(done, done[1:]):
        assert b["audio_span"][0] == a["audio_span"][1]


def test_upload_matches_cli(clip_wav, tiny_model_dir, capsys):
    """The upload and `seqpo translate --audio` agree event for event. Both run in this process (the
    app under a test client), so Whisper runs the same computation with the same threads for both,
    and only a real difference between the two paths can make them disagree."""
    from starlette.testclient import TestClient

    from seqpo.cli import main
    from seqpo.serve import ServeSettings, build_app

    app = build_app(ServeSettings(model=str(tiny_model_dir), pair="en-de"))
    t0 = time.perf_counter()
    with TestClient(app, base_url="http://127.0.0.1") as client, open(clip_wav, "rb") as f:
        r = client.post("/translate/audio", files={"file": ("clip.wav", f, "audio/wav")},
                        data={"pair": "en-de", "policy": "wait-k", "k": "2"})
    wall = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "result" and len(body["sentences"]) >= 2 and body["audio_ms"] > 3000
    print(f"upload of {body['audio_ms'] / 1000:.1f} s: {wall:.2f} s end to end, ASR {body['asr_ms']:.0f} ms")
    assert main(["translate", "--audio", str(clip_wav), "--pair", "en-de", "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--k", "2", "--json"]) == 0
    cli = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]

    def comparable(events):  # timing-free fields of the CLI's events
        out = []
        for e in events:
            if e["type"] == "word":
                continue
            out.append({k: v for k, v in e.items() if k not in ("sentence", "latency_ms", "elapsed_ms")
                        and not k.endswith("_CA")})
        return out

    assert comparable(body["trace"]) == comparable(cli)
    assert [d["prediction"] for d in body["sentences"]] == [e["prediction"] for e in cli if e["type"] == "done"]
    assert body["transcript"] == " ".join(e["text"] for e in body["trace"] if e["type"] == "word")


def test_upload_of_cd_quality_stereo_flac(server, clip_wav):
    """What a recorder saves (44.1 kHz stereo FLAC) is decoded and resampled like the 16 kHz wav."""
    import soundfile

    from seqpo.speech.audio import read_audio

    speech = read_audio(clip_wav)
    cd = np.interp(np.arange(round(len(speech) * 44100 / 16000)) * 16000 / 44100, np.arange(len(speech)), speech)
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([cd, 0.5 * cd], axis=1), 44100, format="FLAC")
    r = httpx.post(f"{server}/translate/audio", files={"file": ("clip.flac", buf.getvalue(), "audio/flac")},
                   data={"pair": "en-de", "policy": "wait-k", "k": "2"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "result" and body["audio_ms"] == pytest.approx(len(speech) / 16.0, abs=20)
    assert_clip_heard(body["transcript"], body)
    assert body["sentences"] and all(d["prediction"] is not None for d in body["sentences"])
    # the same as an uncompressed wav, padded with silence to 7.5 s: 1.3 MB, over 8 s of 16 kHz mono
    # 16-bit (the old body limit), within the limit for --max-audio-seconds 8 of 48 kHz stereo
    long = np.concatenate([cd, np.zeros(round(7.5 * 44100) - len(cd))])
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([long, 0.5 * long], axis=1), 44100, format="WAV", subtype="PCM_16")
    assert len(buf.getvalue()) > 8 * 16000 * 2 + 16384
    r = httpx.post(f"{server}/translate/audio", files={"file": ("clip.wav", buf.getvalue(), "audio/wav")},
                   data={"pair": "en-de", "policy": "wait-k", "k": "2"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["audio_ms"] == pytest.approx(7500.0, abs=20)
    assert_clip_heard(r.json()["transcript"], r.json())


def test_upload_errors(server, clip_wav, tmp_path):
    import soundfile

    def post(data: bytes, **form):
        return httpx.post(f"{server}/translate/audio", files={"file": ("x.wav", data, "audio/wav")},
                          data=form, timeout=60)

    r = post(clip_wav.read_bytes(), pair="de-en")
    assert r.status_code == 400 and r.json()["code"] == "bad_pair" and "English only" in r.json()["message"]
    r = post(b"not a wav file at all")
    assert r.status_code == 400 and r.json()["code"] == "bad_audio"
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros((0, 2), dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
    r = post(buf.getvalue())
    assert r.status_code == 400 and r.json()["code"] == "bad_audio" and "holds no samples" in r.json()["message"]
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(128800, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    r = post(buf.getvalue())
    assert r.status_code == 413 and r.json()["code"] == "too_long"
    r = httpx.post(f"{server}/translate/audio", data={"pair": "en-de"}, timeout=30)
    assert r.status_code == 422  # no file


def test_ws_bad_audio_input_keeps_connection(server):
    def error(ws) -> dict:  # the next error (silence may still give Whisper's guesses: word, step events)
        event = events_until(ws, lambda e: e["type"] not in ("word", "write", "wait", "done"))[-1]
        assert event["type"] == "error", event
        return event

    with connect(ws_url(server)) as ws:
        ws.send(b"\x00\x00" * 100)
        assert error(ws)["code"] == "binary"
        ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 44100}))
        assert error(ws)["code"] == "bad_rate"
        ws.send(json.dumps({"type": "start", "input": "audio", "pair": "de-en"}))
        e = error(ws)
        assert e["code"] == "bad_pair" and "English only" in e["message"]
        ws.send(json.dumps({"type": "start", "input": "video"}))
        assert error(ws)["code"] == "bad_input"
        ws.send(json.dumps({"type": "start", "pair": "en-de"}))  # a text session refuses audio
        assert json.loads(ws.recv(timeout=60))["input"] == "text"
        ws.send(b"\x00\x00" * 100)
        assert error(ws)["code"] == "binary"

        ws.send(json.dumps({"type": "start", "input": "audio", "pair": "en-de", "policy": "wait-k"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        ws.send(b"\x00" * 1001)
        assert error(ws)["code"] == "odd_bytes"
        ws.send(b"\x00" * 40000)
        assert error(ws)["code"] == "too_large"
        ws.send(json.dumps({"type": "source", "text": "hello "}))
        assert error(ws)["code"] == "bad_input"
        silence = b"\x00" * FRAME
        for _ in range(16):  # 8 s, the limit
            ws.send(silence)
        ws.send(silence)
        assert error(ws)["code"] == "too_long"
        ws.send(silence)  # told once; the rest is ignored
        ws.send(json.dumps({"type": "end"}))
        end = events_until(ws, lambda e: e["type"] in ("audio_end", "error"))[-1]
        assert end["type"] == "audio_end" and end["audio_ms"] == pytest.approx(8000.0)
        ws.send(silence)
        assert error(ws)["code"] == "binary"  # the stream has ended

        # still usable: a text sentence
        ws.send(json.dumps({"type": "start", "pair": "en-de", "policy": "wait-k", "k": 1}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        ws.send(json.dumps({"type": "source", "text": "Hello world"}))
        ws.send(json.dumps({"type": "end"}))
        done = events_until(ws, lambda e: e["type"] in ("done", "error"))[-1]
        assert done["type"] == "done" and done["source"] == "Hello world"


def test_abandoned_audio_streams_are_released(server, clip_wav):
    """Clients that leave mid-stream (or restart) free their stream: no slot of
    --max-audio-sessions (4) leaks, and a new client is served."""
    pcm = pcm_bytes(clip_wav)
    for _ in range(3):
        with connect(ws_url(server)) as ws:
            ws.send(json.dumps({"type": "start", "input": "audio", "pair": "en-de", "policy": "wait-k"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            for i in range(0, 3 * FRAME, FRAME):
                ws.send(pcm[i : i + FRAME])
            # a restart replaces the stream; then the client leaves without an end
            ws.send(json.dumps({"type": "start", "input": "audio", "pair": "en-zh", "policy": "wait-k"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            ws.send(pcm[:FRAME])
    deadline = time.monotonic() + 30
    while httpx.get(f"{server}/health").json()["audio_streams"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{server}/health").json()["audio_streams"] == 0
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "input": "audio", "pair": "en-de", "policy": "wait-k"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        stream_clip(ws, pcm, pause=0.05)
        end = events_until(ws, lambda e: e["type"] in ("audio_end", "error"), timeout=120)[-1]
        # what this test is about: the new client is served to the end of its stream. What Whisper
        # hears in a streamed clip depends on how the frames meet its decode points (wall-clock
        # pacing under load), so the words are not asserted here (test_ws_audio_stream does that).
        assert end["type"] == "audio_end" and end["transcript"].strip(), end


def test_dead_worker_fails_audio_sentences_as_worker(tiny_model_dir, tiny_loaded, clip_wav):
    """A model worker that has died is told to an audio session as to a text one: each sentence
    that needs the model gets a `worker` error (not `model`), and the stream still ends."""
    from test_serve_limits import in_process_app, serving

    app, settings = in_process_app(tiny_model_dir, tiny_loaded)

    def broken_worker(size):
        raise RuntimeError("a bug in the worker (simulated)")

    with serving(app, settings) as url:
        app.state.worker.on_batch = broken_worker
        r = httpx.post(f"{url}/translate", json={"text": "one two"}, timeout=30)  # the worker dies on it
        assert r.status_code == 503 and r.json()["code"] == "worker", r.text
        with connect(ws_url(url)) as ws:
            ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 16000, "pair": "en-de"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            stream_clip(ws, pcm_bytes(clip_wav), pause=0.0)
            events = events_until(ws, lambda e: e["type"] == "audio_end", timeout=120)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and all(e["code"] == "worker" for e in errors), errors
    assert all("the model worker has stopped" in e["message"] and e["sentence"] >= 1 for e in errors), errors
    assert not [e for e in events if e["type"] == "done"] and events[-1]["sentences"] == 0
