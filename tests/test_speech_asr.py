"""The streaming ASR front end on real espeak-ng speech and the real Whisper tiny.en."""

import numpy as np
import pytest

from seqpo.errors import InputFileError
from seqpo.metrics.wer import word_errors
from seqpo.speech.asr import StreamingASR, load_whisper, transcribe_offline
from seqpo.speech.audio import SAMPLE_RATE, audio_chunks, ms_of, read_audio
from seqpo.speech.synth import synthesize, write_wav

TEXT = "Thank you very much. I would like a cup of tea."


@pytest.fixture(scope="session")
def whisper():
    return load_whisper(threads=1)


@pytest.fixture(scope="session")
def spoken():
    return synthesize(TEXT)


def test_synthesized_speech_is_16k(spoken, tmp_path):
    assert spoken.dtype == np.float32 and 2.5 < len(spoken) / SAMPLE_RATE < 6
    write_wav(tmp_path / "a.wav", spoken)
    back = read_audio(tmp_path / "a.wav")
    assert len(back) == len(spoken) and np.abs(back - spoken).max() < 1e-3  # 16-bit PCM rounding


def test_streaming_words_are_stable_timed_and_trimmed(whisper, spoken):
    asr = StreamingASR(whisper)
    emitted, calls = [], 0
    for piece in audio_chunks(spoken, 0.5):
        calls += 1
        new = asr.insert(piece)
        assert all(w.known_ms == asr.received_ms for w in new)  # known when the chunk arrived
        emitted += new
        if any(w.ends_sentence for w in new):
            # a finished sentence cuts the buffer at its last word
            assert asr.offset_ms == pytest.approx(new[-1].end_ms if new[-1].ends_sentence else asr.offset_ms, abs=1)
    emitted += asr.finish()
    duration = ms_of(len(spoken))
    assert emitted == asr.words and asr.transcript == " ".join(w.text for w in emitted)
    errors, n = word_errors(asr.transcript, TEXT)
    assert errors / n <= 0.35, asr.transcript
    known = [w.known_ms for w in emitted]
    assert known == sorted(known) and known[-1] <= duration + 1e-6
    assert known[0] >= 1000.0  # no decode before a second of audio
    for w in emitted:
        assert w.start_ms <= w.end_ms and w.start_ms < w.known_ms  # a word is never known before it starts
    assert asr.decodes == calls - 1  # the first half second is not decoded on its own
    # the first sentence ended, so the buffer no longer holds it
    assert any(w.ends_sentence for w in emitted[:-1])
    assert asr.offset_ms > 1000.0 and ms_of(len(asr.buffer)) == pytest.approx(duration - asr.offset_ms, abs=1)
    assert transcribe_offline(whisper, spoken).lower().startswith("thank you very much.")


def test_audio_shorter_than_a_decode_is_transcribed_at_the_end(whisper):
    hello = synthesize("Hello.")[: SAMPLE_RATE * 9 // 10]
    asr = StreamingASR(whisper)
    assert asr.insert(hello) == [] and asr.decodes == 0
    words = asr.finish()
    assert [w.text.strip(".!").lower() for w in words] == ["hello"]
    assert words[0].known_ms == pytest.approx(ms_of(len(hello)))


def test_long_buffer_is_cut_without_sentences(whisper):
    # 3 s of silence then speech, max buffer 2 s: the buffer never holds more than 2 s + a chunk
    audio = np.concatenate([np.zeros(3 * SAMPLE_RATE, dtype=np.float32), synthesize("one two three")])
    asr = StreamingASR(whisper, max_buffer_s=2.0)
    for piece in audio_chunks(audio, 0.5):
        asr.insert(piece)
        assert ms_of(len(asr.buffer)) <= 2500.0
    asr.finish()
    assert asr.offset_ms > 0


def test_bad_wav_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(InputFileError, match="cannot read"):
        read_audio(tmp_path / "junk.wav")
    import soundfile

    soundfile.write(str(tmp_path / "cd.wav"), np.zeros((4410, 2), dtype=np.float32), 44100)
    assert read_audio(tmp_path / "cd.wav").shape == (1600,)  # any rate and channels: resampled, mixed down
