"""Decoding speech input (`seqpo.speech.audio`): the formats users have (wav, flac, ogg, mp3, m4a;
any rate, any channels) become 16 kHz mono float32, for `translate --audio` as for the 16 kHz wav."""

import io
import json
import subprocess

import numpy as np
import pytest

from seqpo.cli import main
from seqpo.errors import InputFileError
from seqpo.speech.audio import SAMPLE_RATE, AudioTooLongError, StreamResampler, audio_from_bytes, read_audio
from seqpo.speech.synth import espeak_binary, synthesize, write_wav

from heard import assert_clip_heard

av = pytest.importorskip("av", reason="speech input needs the speech extra")
soundfile = pytest.importorskip("soundfile")

TEXT = "Thank you very much. I would like a cup of tea."
# AAC in m4a: PyAV's muxer writes no edit list here, so the encoder's 1024-sample priming and its
# last frame's padding stay in the file (up to two frames, 46 ms at 44.1 kHz); the others are exact
SLACK_S = {"m4a": 0.050}


def encode(path, samples: np.ndarray, rate: int, container: str, codec: str) -> None:
    """Stereo float samples (n, 2) encoded by PyAV's own FFmpeg."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        for i in range(0, len(samples), 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[i : i + 4096].T), format="fltp",
                                               layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """espeak-ng's native 22.05 kHz mono wav (spoken as `synthesize` speaks), the same speech as
    44.1 kHz stereo wav, flac, ogg, mp3 and m4a, and the 16 kHz wav `seqpo data speech` writes;
    with the speech's length in s."""
    folder = tmp_path_factory.mktemp("formats")
    raw = subprocess.run([espeak_binary(), "-v", "en-us", "-s", "160", "--stdout", TEXT], capture_output=True,
                         check=True).stdout
    (folder / "native.wav").write_bytes(raw)
    mono, rate = soundfile.read(io.BytesIO(raw), dtype="float32")
    assert rate == 22050
    stereo = np.stack([np.repeat(mono, 2), 0.5 * np.repeat(mono, 2)], axis=1)  # 44.1 kHz, quieter right
    paths = {"native.wav": folder / "native.wav"}
    for ext in ("wav", "flac", "ogg"):
        paths[ext] = folder / f"clip.{ext}"
        soundfile.write(str(paths[ext]), stereo, 44100)
    for ext, container, codec in (("mp3", "mp3", "libmp3lame"), ("m4a", "ipod", "aac")):
        if codec not in av.codecs_available:  # never the case in PyAV's wheels (they carry LAME and AAC)
            continue
        paths[ext] = folder / f"clip.{ext}"
        encode(paths[ext], stereo, 44100, container, codec)
    paths["16k.wav"] = folder / "16k.wav"
    write_wav(paths["16k.wav"], synthesize(TEXT))
    return paths, len(mono) / rate


@pytest.mark.parametrize("kind, exact", [("native.wav", True), ("wav", False), ("16k.wav", True)])
def test_streamed_pieces_resample_as_the_whole_file_decodes(clips, kind, exact):
    """SimulEval's speech agent gets a file's own samples and rate in 400 ms segments; streamed
    through one resampler they are what `read_audio` makes of the whole file (stereo is averaged
    before resampling here, after it there: equal up to float rounding)."""
    paths, _ = clips
    samples, rate = soundfile.read(paths[kind], dtype="float32")
    resample, size = StreamResampler(rate), -(-rate * 400 // 1000)
    pieces = [resample(samples[i : i + size], last=i + size >= len(samples)) for i in range(0, len(samples), size)]
    streamed, whole = np.concatenate(pieces), read_audio(paths[kind])
    if exact:
        np.testing.assert_array_equal(streamed, whole)
    else:
        np.testing.assert_allclose(streamed, whole, atol=1e-6)


@pytest.mark.parametrize("kind", ["native.wav", "wav", "flac", "ogg", "mp3", "m4a"])
def test_every_format_decodes_to_16k_mono(clips, kind):
    paths, seconds = clips
    if kind not in paths:
        pytest.skip(f"PyAV's FFmpeg has no {kind} encoder")
    samples = read_audio(paths[kind])
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / SAMPLE_RATE == pytest.approx(seconds, abs=SLACK_S.get(kind, 0.020))
    assert 0.1 < np.abs(samples).max() <= 1.0
    reference = read_audio(paths["16k.wav"])
    if kind in ("native.wav", "wav", "flac"):  # lossless: the same 16 kHz signal, channels averaged
        n = min(len(samples), len(reference))
        if kind == "native.wav":  # what `synthesize` decodes
            assert np.abs(samples[:n] - reference[:n]).max() < 1e-3
        else:  # upsampled by repeating samples (a slight low-pass), the right channel at half
            assert np.corrcoef(samples[:n], reference[:n])[0, 1] > 0.99
            assert np.abs(samples).max() == pytest.approx(0.75 * np.abs(reference).max(), rel=0.1)
    assert np.array_equal(audio_from_bytes(paths[kind].read_bytes(), kind), samples)


def test_cd_audio_is_averaged_not_summed():
    buf = io.BytesIO()
    tone = (0.9 * np.sin(np.arange(48000) * 2 * np.pi * 440 / 48000)).astype(np.float32)
    soundfile.write(buf, np.stack([tone] * 6, axis=1), 48000, format="WAV", subtype="FLOAT")  # 5.1 channels
    samples = audio_from_bytes(buf.getvalue(), "six.wav")
    assert len(samples) == SAMPLE_RATE and np.abs(samples).max() == pytest.approx(0.9, abs=0.01)


def test_bad_empty_and_long_audio():
    with pytest.raises(InputFileError, match="cannot read audio file notes.txt: Invalid data"):
        audio_from_bytes(b"Dear diary, today I spoke no words.\n" * 40, "notes.txt")
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(0, dtype=np.float32), 44100, format="WAV")
    with pytest.raises(InputFileError, match="empty.wav holds no samples"):
        audio_from_bytes(buf.getvalue(), "empty.wav")
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(3 * 44100, dtype=np.float32), 44100, format="OGG")
    with pytest.raises(AudioTooLongError, match="more than 2 s"):
        audio_from_bytes(buf.getvalue(), "long.ogg", max_seconds=2)
    assert len(audio_from_bytes(buf.getvalue(), "long.ogg", max_seconds=3.1)) == pytest.approx(3 * SAMPLE_RATE, abs=320)


def test_a_header_that_understates_its_length_stops_decoding_at_the_limit(monkeypatch):
    """Decoding stops once the limit is passed: frames after it are never decoded."""
    import seqpo.speech.audio as audio

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(60 * 44100, dtype=np.float32), 44100, format="FLAC")
    decoded = []
    resampler = av.AudioResampler

    class Counting:  # every decoded frame goes through the resampler
        def __init__(self, **settings):
            self.inner = resampler(**settings)

        def resample(self, frame):
            decoded.append(0 if frame is None else frame.samples)
            return self.inner.resample(frame)

    monkeypatch.setattr(av, "AudioResampler", Counting)
    # hide the header's length: only the decoded samples can tell
    monkeypatch.setattr(audio, "_header_seconds", lambda stream: None)
    with pytest.raises(AudioTooLongError):
        audio_from_bytes(buf.getvalue(), "long.flac", max_seconds=2)
    assert 2 * 44100 < sum(decoded) < 3 * 44100


@pytest.mark.parametrize("kind", ["mp3", "native.wav"])
def test_translate_audio_transcribes_other_formats_like_the_16k_wav(clips, kind, tiny_model_dir, capsys):
    paths, _ = clips
    if kind not in paths:
        pytest.skip(f"PyAV's FFmpeg has no {kind} encoder")

    def sources(path) -> list[str]:
        assert main(["translate", "--audio", str(path), "--pair", "en-de", "--model", str(tiny_model_dir),
                     "--policy", "wait-k", "--k", "2", "--json"]) == 0
        events = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        return [e["source"] for e in events if e["type"] == "done"]

    # resampling may change a word (as may the CPU, threads and load: heard.py): both decodings must
    # hear the clip, neither need match the other word for word
    theirs, ours = sources(paths["16k.wav"]), sources(paths[kind])
    assert_clip_heard(" ".join(theirs), ours)
    assert_clip_heard(" ".join(ours), theirs)


def test_audio_dir_takes_every_audio_format_in_name_order(tmp_path):
    from seqpo.languages import parse_pair
    from seqpo.speech.evaluate import load_audio_set

    for name in ("2.mp3", "0.wav", "1.FLAC", "3.ogg", "notes.txt", "synth.jsonl"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "source.en").write_text("a\nb\nc\nd\n")
    (tmp_path / "reference.zh").write_text("1\n2\n3\n4\n")
    files, _, _ = load_audio_set(str(tmp_path), parse_pair("en-zh"), None, None, None)
    assert [p.name for p in files] == ["0.wav", "1.FLAC", "2.mp3", "3.ogg"]
