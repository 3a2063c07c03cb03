"""`seqpo data speech`: a wav is kept only while it says what source.en says, as it was asked to."""

import json

import soundfile

from seqpo.cli import main
from seqpo.languages import parse_pair
from seqpo.speech.evaluate import load_audio_set
from seqpo.speech.synth import MANIFEST, build_speech_set


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
