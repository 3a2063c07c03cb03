"""The web page in a real browser: Debian's headless chromium driven by Playwright types a text,
starts the simulated speaker and watches subtitles and the history fill in, then downloads the
session's subtitle files and reads them back with a subtitle parser."""

from __future__ import annotations

import contextlib
import random
import re
import shutil
from pathlib import Path

import pytest

from seqpo.stream import count_units
from seqpo.subtitles import cue_text, format_subtitles, place_cues

from test_serve import running_server
from test_subtitles import assert_timeline, read_cues, shown

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not shutil.which("chromium"),
    reason="no /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)")


@contextlib.contextmanager
def connected_page(tiny_model_dir, tmp_path, extra_args=(), server_args=()):
    """A real server and the page open in headless chromium, connected; yields (page, page errors)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    with running_server(tiny_model_dir, tmp_path, *server_args) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra_args))
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_function("document.getElementById('status').textContent === 'connected'", timeout=15000)
            yield page, errors
        finally:
            browser.close()


def download(page, button: str, path: Path) -> list[tuple[float, float, str]]:
    """Click a subtitle download button; the saved file's cues."""
    with page.expect_download() as info:
        page.click(button)
    assert info.value.suggested_filename == "seqpo-subtitles" + path.suffix
    info.value.save_as(path)
    return read_cues(path)


def history_cue_texts(page, n: int) -> list[str]:
    """What the cues of the newest n sentences of the history show, oldest first (none for an empty one)."""
    translations = page.eval_on_selector_all("#history li .tgt", "els => els.map((e) => e.textContent)")[:n]
    return [shown(t) for t in reversed(translations) if t != "(empty)" and shown(t)]


def test_page_translates_live(tiny_model_dir, tmp_path):
    with connected_page(tiny_model_dir, tmp_path) as (page, errors):
        page.select_option("#policy", "wait-k")
        page.fill("#k", "1")
        page.fill("#text", "The weather is nice today. I would like a cup of tea.")
        page.eval_on_selector("#speed", "el => { el.value = 600; el.dispatchEvent(new Event('input')); }")
        assert page.text_content("#speed-value") == "600 words/min"
        page.click("#start")
        # wait-1 writes from the first read on: translated text shows while the speaker talks
        page.wait_for_function("document.getElementById('target').textContent.trim().length > 0",
                               timeout=30000)
        page.wait_for_function("document.querySelectorAll('#history li').length === 2", timeout=60000)
        items = page.query_selector_all("#history li")
        # newest first
        assert items[0].query_selector(".src").text_content() == "I would like a cup of tea."
        assert items[1].query_selector(".src").text_content() == "The weather is nice today."
        for item in items:
            assert item.query_selector(".lat").text_content().startswith("AL ")
            assert item.query_selector(".tgt").text_content().strip()
        assert page.text_content("#lag").startswith("AL ")
        assert page.text_content("#status").startswith("ready: en-de, wait-k k=1")
        # long-form: one stream, cut into sentences by the server
        page.check("#long-form")
        page.fill("#text", "My sister lives near the sea. Is it far?")
        page.click("#start")
        page.wait_for_function("document.querySelectorAll('#history li').length === 4", timeout=60000)
        sources = page.eval_on_selector_all("#history li .src", "els => els.map((e) => e.textContent)")
        assert sources[:2] == ["Is it far?", "My sister lives near the sea."]
        # the stream's end (the speaker's one end) is told after its last sentence
        page.wait_for_function("document.getElementById('status').textContent === "
                               "'stream ended: 2 sentence(s) translated'", timeout=30000)
        # the session's subtitles (the long-form stream): a cue per translated sentence, oldest first,
        # on the speaker's clock (600 words/min: 100 ms a word, 9 words)
        expected = history_cue_texts(page, 2)
        for suffix in (".srt", ".vtt"):
            cues = download(page, f"#subs-{suffix[1:]}", tmp_path / f"session{suffix}")
            assert [text for _, _, text in cues] == expected
            assert_timeline(cues, 900)
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert errors == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_page_microphone_and_upload(tiny_model_dir, tmp_path):
    """The page's microphone path, then an upload of the same speech.

    Chromium's fake capture device (playing silence) runs the real capture: getUserMedia, the 16 kHz
    AudioContext, the worklet, 0.5 s binary frames to the server. Then the test takes the worklet's
    place and feeds the spoken clip through the page's own `pushSamples`, sending each half second
    only once the server has transcribed the one before (/health: no ASR lag). The pace is the
    test's, never the wall clock's, and the server decodes one frame at a time (--asr-every-frame),
    so a slow or loaded machine hears the same frames, later; every wait is for an event."""
    pytest.importorskip("faster_whisper", reason="speech input needs the speech extra")
    import httpx
    import numpy as np

    from heard import CLIP, SENTENCE_WER, THANKS, assert_clip_heard, assert_heard, assert_second_sentence
    from seqpo.speech.synth import synthesize, write_wav

    speech = synthesize(CLIP)
    wav, silent = tmp_path / "speech.wav", tmp_path / "silence.wav"
    write_wav(wav, speech)
    write_wav(silent, np.zeros(16000, dtype=np.float32))
    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={silent}", "--autoplay-policy=no-user-gesture-required"]
    history = "document.querySelectorAll('#history li').length"
    with connected_page(tiny_model_dir, tmp_path, fake_mic, ["--asr-every-frame"]) as (page, errors):
        url = page.url.rstrip("/")
        page.select_option("#policy", "wait-k")
        page.fill("#k", "2")
        page.click("#mic")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('ready')",
                               timeout=60000)
        page.wait_for_function("mic !== null && mic.node !== null", timeout=30000)
        assert page.text_content("#mic") == "Stop microphone"
        assert page.evaluate("mic.ctx.sampleRate") == 16000  # so pushSamples takes 16 kHz samples as they are
        # from here on the test is the microphone: the capture node's blocks go nowhere
        page.evaluate("() => { if (mic.node.port) mic.node.port.onmessage = null; else mic.node.onaudioprocess = null; }")
        frame = 8000  # the page's FRAME_SAMPLES: each piece below is one binary frame
        heard_early = False
        for start in range(0, len(speech), frame):
            page.evaluate("(xs) => pushSamples(Float32Array.from(xs))", speech[start:start + frame].tolist())
            page.wait_for_function("ws.bufferedAmount === 0", timeout=30000)
            deadline = 120.0
            while httpx.get(f"{url}/health", timeout=10).json()["asr_lag_ms"] > 0:
                page.wait_for_timeout(50)  # polling the server's state, not pacing the audio
                deadline -= 0.05
                assert deadline > 0, "the server did not transcribe a frame in 120 s"
            if start + frame < len(speech):
                heard_early |= bool(page.text_content("#source").strip())
        # stable words showed while the audio was still coming, with how far the ASR trails
        assert heard_early
        assert re.fullmatch(r"listening… ASR lag \d+\.\d s", page.text_content("#audio-info")), \
            page.text_content("#audio-info")
        page.click("#mic")  # stop: the rest of the frame and an end go out; the server flushes the last words
        page.wait_for_function("document.getElementById('audio-info').textContent.startsWith('audio ended')",
                               timeout=120000)
        page.wait_for_function(f"{history} >= 2", timeout=60000)
        # newest first: the period after "much" ended the first sentence; the rest followed
        sources = page.eval_on_selector_all("#history li .src", "els => els.map((e) => e.textContent)")
        assert_heard(sources[-1], THANKS, SENTENCE_WER, sources)
        assert_second_sentence(" ".join(reversed(sources[:-1])), sources)
        assert_clip_heard(" ".join(reversed(sources)), sources)
        assert " ms of audio" in page.text_content("#lag")
        assert "error" not in page.text_content("#status")
        page.screenshot(path=str(tmp_path / "mic.png"), full_page=True)

        page.set_input_files("#audio-file", str(wav))
        page.wait_for_function("document.getElementById('audio-info').textContent.includes('translated in')",
                               timeout=120000)
        uploaded = page.eval_on_selector_all("#history li .src", "els => els.map((e) => e.textContent)")
        n = len(uploaded) - len(sources)  # the upload's sentences, newest first, above the microphone's
        assert n >= 2 and f"{n} sentence(s)" in page.text_content("#audio-info"), uploaded
        assert_clip_heard(" ".join(reversed(uploaded[:n])), uploaded)
        # the upload's subtitles, in ms of its audio
        cues = download(page, "#subs-srt", tmp_path / "upload.srt")
        assert [text for _, _, text in cues] == history_cue_texts(page, n)
        assert_timeline(cues, len(speech) / 16.0)
        shot = tmp_path / "speech.png"
        page.screenshot(path=str(shot), full_page=True)
        assert errors == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_page_places_cues_as_python_does():
    """subtitles.js writes out seqpo.subtitles' rules: the same cues and cue text for the same input."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    rng = random.Random(0)
    cases = []
    for _ in range(50):
        starts = sorted(rng.uniform(0, 20000) for _ in range(rng.randint(1, 8)))
        spans = [(s, s + rng.choice([0, rng.uniform(0, 3000)]), f"cue {i}") for i, s in enumerate(starts)]
        cases.append((spans, rng.choice([starts[-1], 21000.0, 2000.0])))
    texts = ["Das  Wetter\nist\tschön.", "a\x1bb \x00 c", "你好 ， 世界\u3000。", "x\x1cy"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_script_tag(path=str(Path(__file__).parents[1] / "src/seqpo/serve/static/subtitles.js"))
            for spans, end in cases:
                got = page.evaluate("([spans, end]) => placeCues(spans, end)", [[list(s) for s in spans], end])
                want = [(c.start_ms, c.end_ms) for c in place_cues(spans, end)]
                assert [(g["start"], g["end"]) for g in got] == [(int(s // 1), int(e // 1)) for s, e in want]
            assert page.evaluate("(ts) => ts.map(cueText)", texts) == [cue_text(t) for t in texts]
            for text in texts:
                for char in (False, True):
                    assert page.evaluate("([t, c]) => countUnits(t, c)", [text, char]) == \
                        count_units(text, "char" if char else "word")
            # the whole file, against pysubs2's
            cues = place_cues([(0, 1500.5, "A <b> & c."), (1200, 4000, "Zwei."), (3_725_000, 3_725_001, "drei")])
            js_cues = [{"start": int(c.start_ms // 1), "end": int(c.end_ms // 1), "text": c.text} for c in cues]
            for fmt in ("srt", "vtt"):
                made = page.evaluate("([cues, fmt]) => { const s = new SessionSubtitles(false, false); "
                                     "s.cues = () => cues; return s.file(fmt, 400); }", [js_cues, fmt])
                assert made == format_subtitles(cues, fmt)
        finally:
            browser.close()
