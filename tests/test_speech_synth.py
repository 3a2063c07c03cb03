"""`seqpo data speech`: a wav is kept only while it says what source.<src> says, as it was asked to,
in the voice of the pair's source language."""

import json

import pytest
import soundfile

from seqpo.cli import main
from seqpo.languages import parse_pair
from seqpo.speech.evaluate import load_audio_set
from seqpo.errors import SettingsError
from seqpo.speech.synth import MANIFEST, VOICES, build_speech_set, check_voice


def _frames(path) -> int:
    return soundfile.info(str(path)).frames


def test_wavs_follow_their_text_voice_and_rate(tmp_path):
    out = tmp_path / "speech"
    sources, refs = ["Thank you very much.", "I would like a cup of tea."], ["非常感谢。", "我想要一杯茶。"]
    build_speech_set(sources, refs, out, "zh", wpm=120)
    slow = [_frames(out / f"000{i}.wav") for i in range(2)]
    stamps = [(out / f"000{i}.wav").stat().st_mtime_ns for i in range(2)]

    build_speech_set(sources, refs, out, "zh", wpm=120)  # nothing changed: nothing spoken again
    assert [(out / f"000{i}.wav").stat().st_mtime_ns for i in range(2)] == stamps

    build_speech_set(sources, refs, out, "zh", wpm=300)  # a faster rate: every wav again, shorter
    fast = [_frames(out / f"000{i}.wav") for i in range(2)]
    assert all(f < s * 0.7 for f, s in zip(fast, slow))

    sources[1] = "Hello."  # one line changed: that wav only
    stamp0 = (out / "0000.wav").stat().st_mtime_ns
    build_speech_set(sources, refs, out, "zh", wpm=300)
    assert (out / "0000.wav").stat().st_mtime_ns == stamp0 and _frames(out / "0001.wav") < fast[1] * 0.6
    made = {}
    for line in (out / MANIFEST).read_text(encoding="utf-8").splitlines():
        made[json.loads(line)["file"]] = json.loads(line)
    assert made["0001.wav"] == {"file": "0001.wav", "text": "Hello.", "voice": "en-us", "wpm": 300}
    assert (out / "source.en").read_text(encoding="utf-8").splitlines() == sources


def test_unrecorded_and_leftover_wavs_are_not_trusted(tmp_path, capsys):
    out = tmp_path / "speech"
    src, ref = tmp_path / "s.en", tmp_path / "r.zh"
    src.write_text("Thank you.\nGood morning.\nSee you.\n", encoding="utf-8")
    ref.write_text("谢谢。\n早上好。\n再见。\n", encoding="utf-8")
    out.mkdir()
    soundfile.write(str(out / "0000.wav"), [0.0] * 16000, 16000)  # an older version's wav: no record of its text
    args = ["data", "speech", "--src", str(src), "--ref", str(ref), "--out", str(out)]
    assert main(args) == 0
    assert _frames(out / "0000.wav") != 16000  # spoken again
    assert main([*args, "--limit", "2"]) == 0  # a shorter set: the third wav goes with its line
    assert sorted(p.name for p in out.glob("*.wav")) == ["0000.wav", "0001.wav"]
    wavs, transcripts, _ = load_audio_set(str(out), parse_pair("en-zh"), None, None, None)
    assert len(wavs) == len(transcripts) == 2


def test_the_source_language_is_spoken_in_its_voice(tmp_path, capsys):
    src, ref = tmp_path / "s.de", tmp_path / "r.en"
    src.write_text("Guten Tag.\nVielen Dank.\n", encoding="utf-8")
    ref.write_text("Good day.\nThank you.\n", encoding="utf-8")
    out = tmp_path / "speech"
    assert main(["data", "speech", "--pair", "de-en", "--src", str(src), "--ref", str(ref), "--out", str(out)]) == 0
    made = [json.loads(line) for line in (out / MANIFEST).read_text(encoding="utf-8").splitlines()]
    assert [m["voice"] for m in made] == ["de", "de"]
    assert (out / "source.de").read_text(encoding="utf-8").splitlines() == ["Guten Tag.", "Vielen Dank."]
    assert not (out / "source.en").exists()
    wavs, transcripts, _ = load_audio_set(str(out), parse_pair("de-en"), None, None, None)
    assert len(wavs) == 2 and transcripts[0] == "Guten Tag."
    # another voice is another recording: every wav is spoken again with the voice asked for
    assert main(["data", "speech", "--pair", "de-en", "--voice", "en-us", "--src", str(src), "--ref", str(ref),
                 "--out", str(out)]) == 0
    assert json.loads((out / MANIFEST).read_text(encoding="utf-8").splitlines()[-1])["voice"] == "en-us"


@pytest.mark.parametrize("language", ["de", "zh", "ja"])
def test_a_voice_that_cannot_speak_its_language_is_refused(language):
    """espeak-ng spells out in English what its dictionary lacks (Japanese kanji always; Mandarin
    characters unless built with the extended dictionary): such audio would test nothing."""
    try:
        check_voice(language, VOICES[language])
    except SettingsError as exc:
        assert language != "de" and "cannot speak" in str(exc)
    else:
        assert language != "ja"  # espeak-ng reads Japanese kana only


def test_data_speech_refuses_japanese_in_one_line(tmp_path, capsys):
    src, ref = tmp_path / "s.ja", tmp_path / "r.en"
    src.write_text("お茶を一杯ください。\n", encoding="utf-8")
    ref.write_text("A cup of tea, please.\n", encoding="utf-8")
    assert main(["data", "speech", "--pair", "ja-en", "--src", str(src), "--ref", str(ref),
                 "--out", str(tmp_path / "speech")]) == 2
    err = capsys.readouterr().err.strip()
    assert "espeak-ng's voice 'ja' cannot speak this Japanese sentence" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "speech").exists()
