"""Voice activity of a live audio stream: Silero VAD (v6, shipped with faster-whisper as ONNX)
run on each 32 ms window as it arrives, so the streaming ASR can skip silence and cut at pauses,
and the speech cascade can tell a speaker's sentence end (a pause) from a period Whisper guessed.

Silero v6 as faster-whisper runs it sees each 512-sample window with the 64 samples before it
(its recurrent state is reset per batch), so scoring windows as they arrive gives the same
probabilities as scoring the whole recording at once.
"""

from __future__ import annotations

import numpy as np

from ..errors import MissingExtraError
from .audio import ms_of

WINDOW = 512  # samples per Silero decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees with each one
PAUSES_KEPT = 64  # silences remembered: sentence ends are asked about within seconds of the word


class SpeechDetector:
    """Feed samples with `add`; `speech_end_ms` is where the last window of speech ended, `pauses`
    the recent silences ([start ms, end ms], the last one open while silence goes on)."""

    def __init__(self, threshold: float = 0.5):
        try:
            from faster_whisper.vad import get_vad_model  # optional extra: speech
        except ImportError as exc:
            raise MissingExtraError("speech input needs the speech extra: pip install -e '.[speech]' in the seqpo "
                                    "clone") from exc
        self.model = get_vad_model()  # one ONNX session per process (lru_cache), one thread
        self.threshold = threshold
        self.tail = np.zeros(0, dtype=np.float32)  # samples not yet scored (less than a window)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.scored = 0  # samples scored so far
        self.speech_end_ms: float | None = None  # end of the last speech window; None: no speech yet
        self.pauses: list[list[float]] = []  # silences after speech, oldest first (at most PAUSES_KEPT)
        self.silent = False  # the last scored window was silence (the last pause is still open)
        self.heard = False  # any speech scored yet

    def add(self, samples: np.ndarray) -> bool:
        """Score the complete windows now available; True when any of them is speech."""
        self.tail = np.concatenate([self.tail, samples.astype(np.float32, copy=False)])
        n = len(self.tail) // WINDOW * WINDOW
        if n == 0:
            return False
        windows = self.tail[:n].reshape(-1, WINDOW)
        contexts = np.concatenate([self.context[None], windows[:-1, -CONTEXT:]])
        # the model's __call__ builds the same (context + window) rows from one array; here the
        # first row's context is the previous call's last window instead of zeros
        rows = np.concatenate([contexts, windows], axis=1)
        probs = self.model.session.run(None, {"input": rows, "h": np.zeros((1, 1, 128), np.float32),
                                               "c": np.zeros((1, 1, 128), np.float32)})[0].reshape(-1)
        self.context = windows[-1, -CONTEXT:].copy()
        self.tail = self.tail[n:]
        is_speech = probs > self.threshold
        speech = np.flatnonzero(is_speech)
        if len(speech):
            self.speech_end_ms = ms_of(self.scored + (int(speech[-1]) + 1) * WINDOW)
        self._mark_pauses(is_speech)
        self.scored += n
        return bool(len(speech))

    def _mark_pauses(self, is_speech: np.ndarray) -> None:
        """Extend `pauses` with the silences among these windows (those before any speech do not count)."""
        for i, speech in enumerate(is_speech):
            at = ms_of(self.scored + i * WINDOW)
            if speech:
                self.silent, self.heard = False, True
            elif self.heard:
                if not self.silent:
                    self.pauses = [*self.pauses[-PAUSES_KEPT + 1:], [at, at]]
                    self.silent = True
                self.pauses[-1][1] = at + ms_of(WINDOW)

    def pause_after(self, ms: float, min_ms: float, early_ms: float = 400.0, late_ms: float = 300.0) -> bool | None:
        """Whether a silence of at least `min_ms` lies at `ms`: it overlaps the span from `early_ms`
        before `ms` to `late_ms` after (True); False once enough audio after `ms` was scored to tell,
        else None. Overlap, not where the silence starts: Whisper's word ends land anywhere from
        before the pause to inside it (tiny.en ends "much." of espeak-ng's "Thank you very much."
        200 ms into the 290 ms pause after it on one machine and past 300 ms on another). A pause of
        the sentence before ends at least one word before a period's `ms`."""
        for start, end in self.pauses:
            if start <= ms + late_ms and end >= ms - early_ms and end - start >= min_ms:
                return True
        return False if ms_of(self.scored) >= ms + late_ms + min_ms else None

    def pause_between(self, after_ms: float, before_ms: float, min_ms: float) -> bool:
        """A silence of at least `min_ms` whose middle lies between the two times (the middles of two
        words: Whisper may place a word's ends inside the pause next to it, rarely its middle)."""
        return any(after_ms < (start + end) / 2 < before_ms and end - start >= min_ms for start, end in self.pauses)
