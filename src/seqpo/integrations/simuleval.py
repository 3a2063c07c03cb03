"""SimulEval 1.1 agents for every seqpo policy, adapter and decoding mode: text-to-text and the
speech-to-text cascade (audio in the source language; `--asr base` for other than English):

    simuleval --agent-class seqpo.integrations.simuleval.SeqpoTextAgent --source SRC --target REF \\
        --pair en-zh --policy llm --eval-latency-unit char --sacrebleu-tokenizer zh --output OUT
    simuleval --agent-class seqpo.integrations.simuleval.SeqpoSpeechAgent --source WAV_LIST --target REF \\
        --source-type speech --target-type text --source-segment-size 500 --pair en-de --policy wait-k --k 3 \\
        --output OUT

SimulEval (Ma et al., 2020) sends the source one word per call and asks for a read or a write. The
words are fed to a `driver.EpisodeRun` (the one episode driver, as in the server and the speech
cascade): a policy step runs once `--chunk` words are in, or at the last word, exactly as
`seqpo eval` reads, and its segment is the agent's write. SimulEval counts as a delay the words it
has sent, which is `Step.read`, so its instances.log has `seqpo eval`'s predictions and delays.

The agent's flags are `PolicySettings`' own fields; `--device` and `--dtype` are SimulEval's.
Slots decoding reserves a live sentence's region for `--max-sentence-words` (its length is not
known in advance), so it writes as `seqpo serve` does, not as `seqpo eval`.

Speech. Each instance is one audio file (one sentence), as `seqpo eval --audio-dir` runs it
(`speech.evaluate.run_audio_set`): SimulEval's segments go into a `speech.cascade.SpeechCascade`
(`split_sentences=False`; stable Whisper words are its reads), resampled to 16 kHz as one stream
(`speech.audio.StreamResampler`) when the file has another rate, and `finish()` at the last one. Its
flags are also `SpeechSettings`' (`--asr-vad`, `--asr-window`, ...), except `--audio-chunk`: the ASR
gets SimulEval's `--source-segment-size` ms (its default, 1 ms, would have Whisper decode again
after almost every 32 ms VAD window of speech: pass seqpo's 500). SimulEval 1.1.4 asks for one action per segment and
ends an instance with its last segment (`SentenceLevelEvaluator.__call__` loops until
`source_finished_reading`), so everything one segment made the cascade write is one WriteAction, and
the last segment's action writes what remains with finished=True (without it the agent is not reset
for the next file). SimulEval records as the delay of each written unit the ms of audio sent so far,
which is the cascade's `Step.audio_ms`: with `--source-segment-size` = `--audio-chunk` x 1000 and
16 kHz files both cut the same pieces, so predictions, delays and `source_length` equal
`seqpo eval --audio-dir`'s. What differs: `elapsed` is SimulEval's wall clock (audio sent + time
since the first segment), not seqpo's ASR + model time; the log has no transcript or WER; and
append/slots/cached decoding run as in `seqpo translate --audio` (each sentence an engine episode;
slots closes it at `--max-sentence-words` words and goes on in a new one), which `seqpo eval
--audio-dir` refuses, so there is nothing of seqpo's to compare those with.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from dataclasses import dataclass

import numpy as np
from simuleval.agents import SpeechToTextAgent, TextToTextAgent
from simuleval.agents.actions import Action, ReadAction, WriteAction

from ..config import PolicySettings, SpeechSettings, add_settings, build_settings, check_at_least, setting
from ..errors import SettingsError
from ..driver import EpisodeRun, step_due
from ..languages import LanguagePair, parse_pair
from ..live_engines import EngineSet, live_completer
from ..model_steps import CompleterSteps
from ..model import load_model
from ..policies import retranslates
from ..prompts import check_supported
from ..speech.asr import streaming_asr
from ..speech.audio import StreamResampler
from ..speech.cascade import SpeechCascade
from ..speech.translate import sentence_rows, speech_parts
from ..stream import join_units

# SimulEval's --dtype (or --fp16) in seqpo's words; unset means seqpo's auto
DTYPES = {"fp16": "float16", "fp32": "float32", None: "auto"}


@dataclass
class AgentSettings(PolicySettings):
    """`PolicySettings` plus what a sentence streamed without its length needs."""

    max_sentence_words: int = setting(200, "slots decoding: source units a sentence may reach (its region of "
                                      "reserved positions is sized for this many)")


@dataclass
class SpeechAgentSettings(AgentSettings, SpeechSettings):
    """`AgentSettings` plus the speech front end's; `audio_chunk` is SimulEval's --source-segment-size."""


# flags SimulEval declares itself (--device, --dtype) or that cannot apply to a source arriving
# piece by piece (look-ahead needs the whole source in advance)
SKIPPED = ("device", "dtype", "lookahead", "write_ahead")


def agent_settings(args: Namespace, cls: type[AgentSettings] = AgentSettings) -> AgentSettings:
    """The agent's settings from SimulEval's parsed arguments (seqpo's flags, SimulEval's device/dtype)."""
    values = Namespace(**vars(args))
    values.device = getattr(args, "device", "cpu")
    values.dtype = DTYPES["fp16" if getattr(args, "fp16", False) else getattr(args, "dtype", None)]
    settings = build_settings(cls, values)
    settings.check_policy()
    check_at_least(settings, 1, "max_sentence_words")
    if retranslates(settings.policy):  # a SimulEval write is final
        raise SettingsError(f"SimulEval cannot take back written text: evaluate --policy {settings.policy} with "
                            "seqpo eval")
    return settings


MIN_SEGMENT_MS = 40  # more often than this, the ASR would be asked to decode every voice-activity window


def speech_agent_settings(args: Namespace) -> SpeechAgentSettings:
    """`agent_settings` of the speech agent: the ASR is fed SimulEval's segments, so seqpo's
    --audio-chunk (s) is SimulEval's --source-segment-size (ms)."""
    values = Namespace(**vars(args))
    segment_ms = getattr(args, "source_segment_size", 1)
    if segment_ms < MIN_SEGMENT_MS:  # SimulEval's default is 1 (a word, for text): Whisper would run every 32 ms
        raise SettingsError(f"--source-segment-size is in ms of audio for speech: pass at least {MIN_SEGMENT_MS} "
                            f"(e.g. 500, seqpo's --audio-chunk 0.5); got {segment_ms}")
    values.audio_chunk = segment_ms / 1000.0
    settings = agent_settings(values, SpeechAgentSettings)
    settings.check_speech(parse_pair(settings.pair))
    return settings


def simuleval_pair(settings: AgentSettings, args: Namespace) -> LanguagePair:
    """The pair, checked to be scored by SimulEval in the units seqpo writes and counts delays in."""
    pair = check_supported(parse_pair(settings.pair))
    unit = getattr(args, "eval_latency_unit", pair.target_unit)
    if unit != pair.target_unit:
        # SimulEval would split the writes into other units than seqpo's delays count
        raise SettingsError(f"{pair.target} targets are scored in {pair.target_unit}s: "
                            f"pass --eval-latency-unit {pair.target_unit}")
    return pair


class SeqpoTextAgent(TextToTextAgent):
    """One sentence at a time: SimulEval's words in, the policy's segments out."""

    def __init__(self, args: Namespace):
        self.settings = s = agent_settings(args)
        self.pair = simuleval_pair(s, args)
        self.seqpo_policy = s.build_policy()
        loaded = load_model(s.model, s.adapter, s.dtype, s.device, s.chat_template, s.decoding, s.quantize, s.vocab)
        # each sentence's cache an engine episode (append/slots/cached), as in the server and the cascade
        self.generator = live_completer(loaded, s.decoding, s.slot)
        self.engines = self.generator if isinstance(self.generator, EngineSet) else None
        self.model = CompleterSteps(self.generator)
        self.live: EpisodeRun | None = None
        self.row = None
        super().__init__(args)  # calls reset()

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        add_settings(parser, AgentSettings, skip=SKIPPED)

    def reset(self) -> None:
        super().reset()
        if self.row is not None:
            self.engines.release(self.row)
        self.row = None if self.engines is None else self.engines.open_row(
            self.pair, None, self.settings.use_few_shot(),
            self.settings.max_sentence_words if self.engines.engine_type.reserves_source else None)
        self.live = EpisodeRun(self.pair, self.seqpo_policy, chunk=self.settings.chunk, model=self.model,
                               row=self.model.open(row=self.row))
        self.fed = 0  # SimulEval source segments fed to `live`

    def policy(self) -> Action:
        # a word source gets each word completed by a space; a zh/ja source file must be split into
        # characters with spaces (SimulEval splits it on whitespace), fed back unspaced
        glue = " " if self.pair.source_unit == "word" else ""
        for piece in self.states.source[self.fed:]:
            self.live.feed(piece + glue)
        self.fed = len(self.states.source)
        if self.states.source_finished and not self.live.ended:
            self.live.end()
        # one word completes at most one read, so at most one step runs here
        written = [step.written for step in step_due(self.live) if step.written]
        if self.live.done:
            return WriteAction(join_units(written, self.pair.target_unit), finished=True)
        if written:
            return WriteAction(written[0], finished=False)
        return ReadAction()


class SeqpoSpeechAgent(SpeechToTextAgent):
    """One sentence (one audio file) at a time: SimulEval's audio segments into seqpo's speech
    cascade, the segments its policy writes out."""

    def __init__(self, args: Namespace):
        self.settings = s = speech_agent_settings(args)
        self.pair = simuleval_pair(s, args)
        # the cascade's parts as `seqpo translate --audio` builds them (append/slots/cached: each
        # sentence an engine episode)
        _, self.seqpo_policy, self.whisper, self.generator = speech_parts(s)
        self.rows = sentence_rows(s, self.pair, self.generator)
        self.cascade: SpeechCascade | None = None
        super().__init__(args)  # calls reset()

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        add_settings(parser, SpeechAgentSettings, skip=(*SKIPPED, "audio_chunk"))  # = --source-segment-size

    def reset(self) -> None:
        super().reset()
        if self.cascade is not None:
            self.cascade.drop_sentence()  # an instance left unfinished frees its engine episode
        self.pending: list[str] = []  # segments written since the last action
        asr = streaming_asr(self.whisper, self.settings, self.pair.source)
        self.cascade = SpeechCascade(asr, self.pair, self.seqpo_policy, self.generator, self.settings.chunk,
                                     split_sentences=False,
                                     on_step=lambda _live, step: self.pending.append(step.written), **self.rows)
        self.resample: StreamResampler | None = None
        self.fed = 0  # samples of states.source fed to the cascade

    def policy(self) -> Action:
        new = self.states.source[self.fed:]
        self.fed = len(self.states.source)
        if self.resample is None and self.states.source_sample_rate:
            self.resample = StreamResampler(self.states.source_sample_rate)
        if self.resample is not None:
            samples = self.resample(np.asarray(new, dtype=np.float32), last=self.states.source_finished)
            if len(samples):
                self.cascade.feed(samples)
        if self.states.source_finished:
            self.cascade.finish()  # SimulEval resets the agent only after a finished write
            return WriteAction(self._written(), finished=True)
        # SimulEval's speech loop sends the next segment with every call, so what this one wrote
        # is one write, at the audio sent so far, as seqpo eval records it
        text = self._written()
        return WriteAction(text, finished=False) if text else ReadAction()

    def _written(self) -> str:
        text = join_units([w for w in self.pending if w], self.pair.target_unit)
        self.pending = []
        return text


__all__ = ["AgentSettings", "SeqpoSpeechAgent", "SeqpoTextAgent", "SpeechAgentSettings", "agent_settings",
           "speech_agent_settings"]
