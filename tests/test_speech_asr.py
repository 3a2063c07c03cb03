"""The streaming ASR front end on real espeak-ng speech and the real Whisper tiny.en."""

import numpy as np
import pytest

from seqpo.errors import InputFileError
from seqpo.metrics.wer import word_errors
from seqpo.speech.asr import StreamingASR, load_whisper, transcribe_offline
from seqpo.speech.audio import SAMPLE_RATE, audio_chunks, ms_of, read_audio
from seqpo.speech.synth import synthesize, write_wav

from heard import (COMMA_CLAUSE, SENTENCE_WER, TEA_TAIL, THANKS, assert_clip_heard, assert_heard,
                   assert_second_sentence, assert_tail_heard, trimmed)

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
    assert_clip_heard(asr.transcript)
    known = [w.known_ms for w in emitted]
    assert known == sorted(known) and known[-1] <= duration + 1e-6
    assert known[0] >= 1000.0  # no decode before a second of audio
    for w in emitted:
        assert w.start_ms <= w.end_ms and w.start_ms < w.known_ms  # a word is never known before it starts
    # the first half second is not decoded on its own; VAD skips chunks without new speech
    assert calls // 2 <= asr.decodes <= calls - 1
    # the first sentence ended, so the buffer no longer holds it
    assert any(w.ends_sentence for w in emitted[:-1])
    assert asr.offset_ms > 1000.0 and ms_of(len(asr.buffer)) == pytest.approx(duration - asr.offset_ms, abs=1)
    assert_clip_heard(transcribe_offline(whisper, spoken))


def test_audio_shorter_than_a_decode_is_transcribed_at_the_end(whisper):
    hello = synthesize("Hello.")[: SAMPLE_RATE * 9 // 10]
    asr = StreamingASR(whisper)
    assert asr.insert(hello) == [] and asr.decodes == 0
    words = asr.finish()
    assert [w.text.strip(".!?").lower() for w in words] == ["hello"]
    assert words[0].known_ms == pytest.approx(ms_of(len(hello)))


@pytest.mark.parametrize("vad", [True, False])
def test_long_buffer_is_cut_without_sentences(whisper, vad):
    # 3 s of silence then speech, max buffer 2 s: the buffer never holds more than 2 s + a chunk
    audio = np.concatenate([np.zeros(3 * SAMPLE_RATE, dtype=np.float32), synthesize("one two three")])
    asr = StreamingASR(whisper, max_buffer_s=2.0, vad=vad)
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


def test_no_words_in_five_seconds_of_silence(whisper):
    """Two sentences 5 s apart: nothing is transcribed in the gap, nothing repeated, and the
    silence is not decoded at all (Whisper hallucinates "Thank you." and repeats on silence)."""
    first, second = synthesize("Thank you very much."), synthesize("I would like a cup of tea.")
    gap_start = ms_of(len(first))
    audio = np.concatenate([first, np.zeros(5 * SAMPLE_RATE, dtype=np.float32), second])
    gap_end = ms_of(len(first) + 5 * SAMPLE_RATE)
    asr = StreamingASR(whisper)
    decodes_in_gap = 0
    for piece in audio_chunks(audio, 0.5):
        before = asr.decodes
        asr.insert(piece)
        if gap_start + 1000.0 < asr.received_ms <= gap_end:
            decodes_in_gap += asr.decodes - before
    asr.finish()
    words = [w.text.lower().strip(".,!?") for w in asr.words]
    # each sentence heard on its own side of the gap; no words repeated (a repeat adds insertions)
    before = " ".join(w.text for w in asr.words if w.end_ms <= gap_start + 300.0)
    after = " ".join(w.text for w in asr.words if w.start_ms >= gap_end - 300.0)
    assert_heard(before, THANKS, SENTENCE_WER, asr.transcript)
    assert_second_sentence(after, asr.transcript)
    assert not [w for w in asr.words if gap_start + 300.0 < w.start_ms and w.end_ms < gap_end - 300.0], asr.words
    assert len(words) <= 12, asr.transcript  # 4 + 7 words said: no hallucinated or repeated phrase
    # after the pause is noticed (one final decode), the silence costs nothing and the buffer is emptied
    assert decodes_in_gap <= 1
    first_done = [w for w in asr.words if w.end_ms <= gap_start + 300.0]
    assert first_done and all(w.known_ms <= gap_start + 1500.0 for w in first_done)  # final at the pause


def test_vad_windows_match_a_whole_recording_pass(spoken):
    """Scoring windows as chunks arrive gives faster-whisper's own whole-recording probabilities."""
    from faster_whisper.vad import get_vad_model

    from seqpo.speech.vad import WINDOW, SpeechDetector

    audio = np.concatenate([np.zeros(SAMPLE_RATE, dtype=np.float32), spoken])
    audio = audio[: len(audio) // WINDOW * WINDOW]
    whole = get_vad_model()(audio).reshape(-1)
    detector = SpeechDetector()
    assert not detector.add(audio[:SAMPLE_RATE // 2])  # half a second of silence
    assert detector.speech_end_ms is None
    for piece in audio_chunks(audio[SAMPLE_RATE // 2:], 0.3):  # not a multiple of the window
        detector.add(piece)
    assert detector.scored == len(audio)
    last = int(np.flatnonzero(whole > 0.5)[-1])
    assert detector.speech_end_ms == pytest.approx(ms_of((last + 1) * WINDOW))
    assert ms_of(len(audio)) - 600 < detector.speech_end_ms  # speech runs to near the end of the clip


def test_a_pause_counts_wherever_whisper_put_the_word_end():
    """`pause_after` asks whether a long enough silence overlaps the word's end give or take
    Whisper's timestamp error: the end may fall before the pause, at its start or deep inside it
    (tiny.en's end of "much." varies by machine from 200 to past 300 ms into a 290 ms pause)."""
    from seqpo.speech.vad import SpeechDetector

    detector = SpeechDetector()
    detector.pauses = [[1000.0, 1180.0], [2000.0, 2290.0]]  # a comma's pause, then a sentence's
    detector.scored = 16 * 4000  # 4 s scored: everything below is known
    for word_end in (1700.0, 2000.0, 2200.0, 2290.0, 2500.0):  # before, at and inside the sentence pause
        assert detector.pause_after(word_end, 250.0) is True, word_end
    for word_end in (1100.0, 1180.0, 2900.0):  # at the comma's short pause; well past the long one
        assert detector.pause_after(word_end, 250.0) is False, word_end
    detector.scored = 16 * 2100  # the pause after 2050 is only 100 ms old: not known yet
    detector.pauses = [[1000.0, 1180.0], [2000.0, 2100.0]]
    assert detector.pause_after(2050.0, 250.0) is None


def test_a_pause_between_two_words_is_placed_by_their_middles():
    """`pause_between` finds a long enough silence between two words' middles: Whisper may stretch a
    word's ends into the pause beside it (so "New" of "... computing. New Zealand's" can end inside
    the pause before it), rarely its middle."""
    from seqpo.speech.vad import SpeechDetector

    detector = SpeechDetector()
    detector.pauses = [[1000.0, 1180.0], [2000.0, 2320.0]]  # a comma's pause, then a sentence's
    assert detector.pause_between(1800.0, 2500.0, 300.0)  # the sentence pause's middle (2160) lies between
    assert not detector.pause_between(2200.0, 2500.0, 300.0)  # after it: the pause came before the first word
    assert not detector.pause_between(900.0, 1300.0, 300.0)  # the comma's pause is too short
    assert detector.pause_between(900.0, 1300.0, 150.0)


def test_short_encoder_window(whisper, spoken):
    """A 10 s encoder window transcribes the clip as well as faster-whisper's 30 s one."""
    from seqpo.speech.asr import decode_words

    short = decode_words(whisper, spoken, window_s=10.0)
    text = " ".join(w for w, _, _ in short)
    assert_clip_heard(text, short)
    errors, n = word_errors(text, TEXT)
    full_errors, _ = word_errors(" ".join(w for w, _, _ in decode_words(whisper, spoken)), TEXT)
    assert errors <= max(2, full_errors), text
    ends = [e for _, _, e in short]
    assert all(e > s for _, s, e in short)
    assert ends == sorted(ends) and ends[-1] <= ms_of(len(spoken)) + 100.0


def test_repetition_loop_is_cut():
    from seqpo.speech.asr import without_loop

    said = [("I", 0.0, 300.0), ("would", 300.0, 480.0), ("like", 480.0, 740.0), ("tea.", 740.0, 1500.0)]
    loop = [(w, 1500.0, 1500.0) for w, _, _ in said] * 3  # what Whisper appends on a short window
    assert without_loop(said + loop, 1520.0) == said
    assert without_loop(said + said[:3], 1520.0) == said + said[:3]  # 3 words again, not 3 twice
    twice = said[:3] + [("I", 800.0, 900.0), ("would", 900.0, 1000.0), ("like", 1000.0, 1400.0)]
    assert without_loop(twice, 3000.0) == said[:3]
    assert without_loop([("got", 460.0, 460.0), ("some", 460.0, 580.0)], 3000.0) == \
        [("got", 460.0, 460.0), ("some", 460.0, 580.0)]  # one empty word inside the audio is a word


def test_a_phrase_said_twice_keeps_its_timed_copy():
    """When the audio stops right after a phrase, Whisper may say it twice and time the second copy:
    the phrase is kept once, its words from the copy that has their audio."""
    from seqpo.speech.asr import without_loop

    first = [("I", 0.0, 320.0), ("would", 320.0, 480.0), ("like", 480.0, 700.0), ("a", 700.0, 700.0),
             ("cup", 700.0, 700.0), ("of", 700.0, 700.0), ("tea.", 700.0, 700.0)]
    second = [("I", 700.0, 700.0), ("would", 700.0, 700.0), ("like", 700.0, 720.0), ("a", 720.0, 900.0),
              ("cup", 900.0, 1100.0), ("of", 1100.0, 1280.0), ("tea.", 1280.0, 1480.0)]
    assert without_loop(first + second, 1519.0) == first[:3] + second[3:]


@pytest.mark.parametrize("chunk_s", [0.3, 0.5, 0.7])
def test_words_said_right_before_the_end_are_heard(whisper, spoken, chunk_s):
    """The clip's last words end where its audio does (no trailing silence): they still reach the
    transcript, and the last word heard ends near the end of the audio (a lost tail ends ~1.5 s early)."""
    audio = trimmed(spoken)
    asr = StreamingASR(whisper)
    for piece in audio_chunks(audio, chunk_s):
        asr.insert(piece)
    asr.finish()
    assert_clip_heard(asr.transcript, chunk_s)
    assert_tail_heard(asr.transcript, TEA_TAIL, chunk_s)
    assert asr.words[-1].end_ms >= ms_of(len(audio)) - 700.0, asr.words


def test_a_sentence_ends_only_where_the_speaker_paused(whisper):
    """A word ending in . ? ! ends a sentence once the pause after it is heard; Whisper's periods
    inside a clause (at a comma's short pause, or where its buffer ended) do not."""
    def sentence_ends(text: str) -> tuple[list[bool | None], StreamingASR]:
        asr = StreamingASR(whisper)
        for piece in audio_chunks(synthesize(text), 0.5):
            asr.insert(piece)
        asr.finish()
        return [asr.ends_sentence_at(w) for w in asr.words if w.ends_sentence], asr  # all known at the end

    ends, asr = sentence_ends(TEXT)
    # "much." (a pause follows) and the last word (the audio ends); a period tiny.en may put inside
    # the second sentence has no pause after it
    assert len(ends) >= 2 and ends[0] is ends[-1] is True and not any(ends[1:-1]), asr.words
    ends, asr = sentence_ends(COMMA_CLAUSE)
    assert ends[-1] is True and not any(ends[:-1]), asr.words  # only the last word ends it
