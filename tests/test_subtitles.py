"""Subtitle files: cue placement by hand, and `seqpo translate --subtitles` on text (long-form) and on
real espeak-ng speech heard by the real Whisper tiny.en, each file read back by a subtitle parser
(srt for SubRip, pysubs2 for WebVTT)."""

import html
import json
import unicodedata

import pysubs2
import pytest
import srt

from seqpo.cli import main
from seqpo.speech.audio import read_audio
from seqpo.speech.synth import synthesize, write_wav
from seqpo.stream import Episode, Step
from seqpo.subtitles import MIN_CUE_MS, Cue, episode_cues, format_subtitles, place_cues

from heard import CLIP, CLIP_WER, assert_heard

LONG_FORM = "The weather is nice today. I would like a cup of tea, please. Our team released the new version."


def shown(prediction: str) -> str:
    """What a cue shows of a translation: no control characters, whitespace runs as one space."""
    return " ".join("".join(c for c in prediction if c.isspace() or unicodedata.category(c) != "Cc").split())


def read_cues(path) -> list[tuple[float, float, str]]:
    """(start ms, end ms, text) of each cue, parsed by srt (.srt) or pysubs2 (.vtt), from UTF-8 bytes."""
    text = path.read_bytes().decode("utf-8")
    if path.suffix == ".srt":
        return [(c.start.total_seconds() * 1000, c.end.total_seconds() * 1000, c.content) for c in srt.parse(text)]
    subs = pysubs2.SSAFile.from_string(text, format_="vtt")
    return [(e.start, e.end, html.unescape(e.text)) for e in subs]  # .text: .plaintext drops {...}


def assert_timeline(cues, end_ms: float) -> None:
    """Cues in order, each of positive length, none overlapping the next, all within [0, end_ms]."""
    assert cues
    for (start, end, _), (next_start, _, _) in zip(cues, cues[1:] + [(end_ms, None, None)]):
        assert 0 <= start < end <= next_start <= end_ms


def events_by_sentence(stdout: str) -> list[tuple[list[dict], dict]]:
    """`--json` output as (steps, done) per sentence."""
    sentences, steps = [], []
    for event in map(json.loads, stdout.splitlines()):
        if event["type"] == "done":
            sentences.append((steps, event))
            steps = []
        else:
            steps.append(event)
    return sentences


def test_place_cues_by_hand():
    # apart: kept as they are
    assert place_cues([(800, 2000, "a"), (2800, 4800, "b")]) == [Cue(800, 2000, "a"), Cue(2800, 4800, "b")]
    # the earlier cue is clipped where the next starts; a zero-length cue gets the minimum
    cues = place_cues([(0, 3000, "a"), (2000, 2000, "b"), (9000, 9500, "c")])
    assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 2000), (2000, 2000 + MIN_CUE_MS), (9000, 9500 + 500)]
    # written at once at the very end of the audio: pulled back inside it, the one before clipped
    cues = place_cues([(1000, 4000, "a"), (5000, 5000, "b"), (5000, 5000, "c")], end_ms=5000)
    assert [(c.start_ms, c.end_ms) for c in cues] == [(1000, 3000), (3000, 4000), (4000, 5000)]
    # too little room for every minimum: they share what there is
    cues = place_cues([(0, 0, "a"), (0, 0, "b")], end_ms=1000)
    assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 500), (500, 1000)]
    assert place_cues([]) == []


def test_episode_cues_by_hand():
    """Text on the clock (a sentence's reads count from the units before it); re-translation dated
    by the updates that changed the display; an empty translation gets no cue."""
    first = Episode("A b c.", "word", "word", [Step(1, ""), Step(2, "X"), Step(3, "Y\nZ\x1b")])
    empty = Episode("D e.", "word", "word", [Step(1, ""), Step(2, "")])
    retranslated = Episode("F g h i.", "word", "word", [
        Step(1, "", display=""), Step(2, "", display="V"), Step(3, "", display="V"), Step(4, "", display="W x")])
    cues = episode_cues([first, empty, retranslated], unit_ms=1000)
    assert cues == [Cue(2000, 3000, "X Y Z"), Cue(7000, 9000, "W x")]  # reads 5+2 to 5+4; the text lasts 9 s
    spoken = Episode("Hi.", "word", "char", [Step(1, "你", audio_ms=1500.0), Step(1, "好", audio_ms=1700.0)],
                     audio_span=(0.0, 1200.0))
    assert episode_cues([spoken], end_ms=2000) == [Cue(1000, 2000, "你好")]  # a second, inside the audio


def test_formats_keep_the_text():
    cues = [Cue(0, 1234.4, "Das Wetter <ist> {schön} & gut."), Cue(1234.4, 3_725_001, "你好，世界。")]
    srt_text = format_subtitles(cues, "srt")
    parsed = list(srt.parse(srt_text))
    assert [c.content for c in parsed] == [c.text for c in cues]
    assert parsed[1].end.total_seconds() == pytest.approx(3725.001)
    vtt = format_subtitles(cues, "vtt")
    assert vtt.startswith("WEBVTT\n") and "&lt;ist&gt; {schön} &amp; gut." in vtt and "01:02:05.001" in vtt
    assert [html.unescape(e.text) for e in pysubs2.SSAFile.from_string(vtt, format_="vtt")] == \
        [c.text for c in cues]


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_translate_long_form_subtitles(tiny_model_dir, tmp_path, capsys, suffix):
    out = tmp_path / f"talk{suffix}"
    code = main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--policy", "wait-k", "--k", "2",
                 "--long-form", "--json", "--subtitles", str(out), LONG_FORM])
    assert code == 0
    sentences = events_by_sentence(capsys.readouterr().out)
    assert len(sentences) == 3
    cues = read_cues(out)
    translated = [(steps, done) for steps, done in sentences if done["prediction"].strip()]
    assert [text for _, _, text in cues] == [shown(done["prediction"]) for _, done in translated]
    # each sentence's first and last write on the 400 ms clock, placed by the rules tested above
    offset, spans = 0, []
    for steps, done in sentences:
        writes = [e["read"] for e in steps if e["type"] == "write"]
        if done["prediction"].strip():
            spans.append(((offset + writes[0]) * 400, (offset + writes[-1]) * 400, done["prediction"]))
        offset += len(done["source"].split())
    assert [(start, end) for start, end, _ in cues] == \
        [(c.start_ms, c.end_ms) for c in place_cues(spans, end_ms=offset * 400)]
    assert cues[0][0] == spans[0][0]  # the first cue starts at its first write
    assert_timeline(cues, offset * 400)


def test_translate_subtitles_clock_and_bad_names(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "fast.srt"
    assert main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--policy", "offline",
                 "--unit-ms", "800", "--subtitles", str(out), "The weather is nice today."]) == 0
    (start, end, _), = read_cues(out)
    # offline writes it all after the 5th word, at 4 s: the cue gets its minimum, within the text's 4 s
    assert (start, end) == (4000 - MIN_CUE_MS, 4000)
    capsys.readouterr()
    for name, message in (("subs.txt", "must end in .srt or .vtt"), ("missing/subs.srt", "does not exist")):
        assert main(["translate", "--model", str(tiny_model_dir), "--subtitles", str(tmp_path / name), "Hi."]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert main(["translate", "--model", str(tiny_model_dir), "--unit-ms", "0", "Hi."]) == 2
    assert "--unit-ms must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_translate_audio_subtitles(tiny_model_dir, tmp_path, capsys, suffix):
    wav = tmp_path / "clip.wav"
    write_wav(wav, synthesize(CLIP))
    out = tmp_path / f"clip{suffix}"
    assert main(["translate", "--audio", str(wav), "--pair", "en-zh", "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--k", "2", "--json", "--subtitles", str(out)]) == 0
    sentences = events_by_sentence(capsys.readouterr().out)
    assert_heard(" ".join(done["source"] for _, done in sentences), CLIP, CLIP_WER, sentences)
    cues = read_cues(out)
    translated = [(steps, done) for steps, done in sentences if done["prediction"].strip()]
    assert [text for _, _, text in cues] == [shown(done["prediction"]) for _, done in translated]
    assert_timeline(cues, len(read_audio(wav)) / 16.0)
    # the cues are the sentences' (first write, last write) audio times, placed by the rules tested above
    spans = []
    for steps, done in translated:
        writes = [e["audio_ms"] for e in steps if e["type"] == "write"]
        spans.append((writes[0], writes[-1], done["prediction"]))
    placed = place_cues(spans, end_ms=len(read_audio(wav)) / 16.0)
    assert [(start, end) for start, end, _ in cues] == \
        [pytest.approx((c.start_ms, c.end_ms), abs=1.0) for c in placed]
