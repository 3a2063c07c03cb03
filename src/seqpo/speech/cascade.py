"""The speech cascade: stable ASR words are the reads of the text SiMT policy.

Each word the streaming ASR emits is fed to an `EpisodeRun` (the one episode driver, as in eval and
the server); a word ending in . ? ! ends the sentence where the speaker paused after it
(`StreamingASR.ends_sentence_at`: Whisper also puts a period after whatever word its buffer
happens to end on, mid-clause), and so does a longer pause before the next word where Whisper
wrote no period (`StreamingASR.paused_between`), so an unbounded talk becomes a sequence of episodes. Until the
pause is known the word's policy step waits (so a sentence's last read is still its finishing
step); the word after it, without a pause, continues the sentence. Every policy step records
`audio_ms`, the audio received when it ran, so the delays of the written target units are in ms
of audio as SimulEval measures speech input. Computation time: each step's `elapsed_ms` is its
model time plus the ASR decoding done since the previous step, so `elapsed` is SimulEval's wall
clock of an evaluation that feeds audio without waiting.
With append/slots decoding (`new_row`) every sentence is also an episode of the streaming
engine (`seqpo.live_engines`), released once the sentence is done or dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..driver import EpisodeRun, step_due
from ..model_steps import CompleterSteps
from ..generation import Generator
from ..languages import LanguagePair
from ..policies.base import Policy
from ..sentences import closes_sentence
from ..stream import Episode, Step
from .asr import AsrWord, StreamingASR
from .audio import audio_chunks

if TYPE_CHECKING:
    from ..live_engines import LiveRow


class SpeechCascade:
    """Feed audio with `feed`, close with `finish`; finished sentences go to `on_done`."""

    def __init__(self, asr: StreamingASR, pair: LanguagePair, policy: Policy, generator: Generator | None,
                 chunk: int = 1, split_sentences: bool = True,
                 on_step: Callable[[EpisodeRun, Step], None] | None = None,
                 on_done: Callable[[Episode, list[AsrWord]], None] | None = None,
                 on_word: Callable[[EpisodeRun, AsrWord], None] | None = None, max_units: int | None = None,
                 new_row: Callable[[], LiveRow] | None = None):
        self.asr, self.pair, self.policy, self.generator, self.chunk = asr, pair, policy, generator, chunk
        self.split_sentences, self.on_step, self.on_done, self.on_word = split_sentences, on_step, on_done, on_word
        self.max_units = max_units  # a sentence this long (in words) is closed as if it ended (server)
        # append/slots: a new sentence's engine episode; `generator` then runs its model steps
        # (`complete(requests, rows)`) and frees it (`release`)
        self.new_row = new_row
        self.model = None if generator is None else CompleterSteps(generator)
        self.row: LiveRow | None = None
        self.live: EpisodeRun | None = None
        self.sentence_words: list[AsrWord] = []
        self.end_candidate: AsrWord | None = None  # the open sentence's last word has . ? !, the pause is not known yet
        self.sentence_start_ms = 0.0
        self.asr_ms_counted = 0.0  # ASR compute already charged to some step
        self.episodes: list[Episode] = []

    def feed(self, samples: np.ndarray) -> None:
        words = self.asr.insert(samples)
        if not words:
            self._settle(words_follow=False)
        for word in words:
            self._word(word)

    def finish(self) -> list[Episode]:
        """The audio has ended: emit the last words and finish the open sentence."""
        for word in self.asr.finish():
            self._word(word, run=False)  # known together with the end: the last read finishes
        self._settle(words_follow=False)  # the end of the audio ends a sentence at its last word
        if self.live is not None:
            self._close(self.asr.received_ms)
        return self.episodes

    def _settle(self, words_follow: bool) -> None:
        """Close the open sentence at `end_candidate` once the speaker's pause after it is heard;
        once speech went on without one (or a next word came first, whose read runs the step
        held back), the sentence goes on."""
        if self.end_candidate is None:
            return
        ended = self.asr.ends_sentence_at(self.end_candidate)
        if ended:
            self._close(self.end_candidate.end_ms)
        elif ended is False or words_follow:
            self.end_candidate = None
            if not words_follow:
                self._run()

    def _word(self, word: AsrWord, run: bool = True) -> None:
        self._settle(words_follow=True)
        if self.live is not None and self.split_sentences and self.asr.paused_between(self.sentence_words[-1], word):
            self._close(self.sentence_words[-1].end_ms)  # a sentence without a period (`paused_between`)
        if self.live is None:
            self.row = self.new_row() if self.new_row else None
            self.live = EpisodeRun(self.pair, self.policy, chunk=self.chunk, model=self.model,
                                   row=None if self.model is None else self.model.open(row=self.row))
        self.live.feed(word.text + ("" if self.pair.source_unit == "char" else " "))  # zh/ja: no spaces
        self.sentence_words.append(word)
        if self.on_word:
            self.on_word(self.live, word)
        ended = self.split_sentences and self.asr.ends_sentence_at(word)
        if ended or closes_sentence(word.text, len(self.sentence_words), self.max_units, at_punctuation=False):
            self._close(word.end_ms)  # the sentence's last read is its finishing step
            return
        if ended is None:
            self.end_candidate = word  # its step waits for the pause (`_settle`)
        elif run:
            self._run()

    def _run(self) -> None:
        for step in step_due(self.live):
            step.audio_ms = self.asr.received_ms
            step.elapsed_ms += self.asr.compute_ms - self.asr_ms_counted
            self.asr_ms_counted = self.asr.compute_ms
            if self.on_step:
                self.on_step(self.live, step)

    def _close(self, end_ms: float) -> None:
        self.live.end(mark=".")  # a sentence closed at a pause (or at the audio's end) ends like one
        self._run()
        episode = self.live.episode
        episode.audio_span = (self.sentence_start_ms, max(end_ms, self.sentence_start_ms + 1.0))
        self.episodes.append(episode)
        self._release()
        if self.on_done:
            self.on_done(episode, self.sentence_words)
        self.live, self.sentence_words, self.sentence_start_ms = None, [], end_ms
        self.end_candidate = None

    def drop_sentence(self) -> None:
        """Abandon the open sentence (its model step failed); later words start a new one."""
        if self.live is not None:
            self._release()
            end_ms = self.sentence_words[-1].end_ms if self.sentence_words else self.sentence_start_ms
            self.live, self.sentence_words, self.sentence_start_ms = None, [], end_ms
            self.end_candidate = None

    def _release(self) -> None:
        if self.row is not None:
            self.generator.release(self.row)
            self.row = None


def stream_audio(samples: np.ndarray, cascade: SpeechCascade, chunk_s: float) -> list[Episode]:
    """Run a whole recording through the cascade in `chunk_s`-second pieces."""
    for piece in audio_chunks(samples, chunk_s):
        cascade.feed(piece)
    return cascade.finish()
