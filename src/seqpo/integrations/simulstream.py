"""A simulstream 1.0 speech processor: seqpo's speech cascade (streaming Whisper, then any seqpo
policy and decoding mode) run and scored by simulstream's own commands (Papi et al., 2025,
"simulstream: Open-Source Toolkit for Evaluation and Demonstration of Streaming Speech-to-Text
Translation Systems"):

    # seqpo.yaml: simulstream's two keys, then any seqpo setting
    type: seqpo.integrations.simulstream.SeqpoSpeechProcessor
    speech_chunk_size: 0.5      # seconds of audio per chunk: seqpo's --audio-chunk
    policy: wait-k
    k: 3

    simulstream_inference --speech-processor-config seqpo.yaml --wav-list-file talks.txt \\
        --src-lang en --tgt-lang de --metrics-log-file metrics.jsonl

simulstream streams each wav (a whole talk, unsegmented) in `speech_chunk_size` pieces through
`process_chunk`, which feeds a `speech.cascade.SpeechCascade` cutting its own sentences (. ? ! or
`max_sentence_units` words), as `seqpo eval --long-form --audio-dir` hears a talk; the last, shorter
piece (or `end_of_stream`) finishes it. Each call answers with the target units (words; characters
for zh/ja) written since the last one, and for re-translation the units it took back (`TalkText`);
simulstream dates every unit by the audio it had sent, which is the cascade's `Step.audio_ms`, so
its StreamLAAL is that of `seqpo eval --long-form --audio-dir` on the same audio (in s instead of
ms). Its computation-aware delays are not: simulstream adds each chunk's own compute time, seqpo
runs a clock over the talk (`long_form.stream_clock`). seqpo's ASR has its own voice activity
detection (`asr_vad`): simulstream's VAD wrapper, which cuts the audio into pieces of any length,
is not needed.

The pair is the config's `pair`, else `en-` + simulstream's target language (`--tgt-lang`, or a
client's `target_lang`), else `PolicySettings`' default; each pair runs on its own shipped adapter,
loaded on its first stream. Whisper and every loaded model are shared by all processors of the
process (simulstream_server's pool); each processor has its own generator and cascade.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import yaml
from simulstream.server.speech_processors import SAMPLE_RATE, SpeechProcessor
from simulstream.server.speech_processors.incremental_output import IncrementalOutput

from ..config import PolicySettings, SpeechSettings, check_at_least, config_values, setting
from ..data.long_form import read_long_form
from ..errors import InputFileError, SeqpoError, SettingsError
from ..languages import LanguagePair, parse_pair
from ..model import LoadedModel, load_model
from ..prompts import check_supported
from ..resume import write_atomic
from ..sentences import SentenceSettings
from ..speech.asr import load_whisper, streaming_asr
from ..speech.cascade import SpeechCascade
from ..speech.long_form import spoken_streams
from ..speech.synth import write_wav
from ..speech.translate import sentence_rows, speech_parts
from ..stream import Step, common_prefix, join_units, split_units


@dataclass
class ProcessorSettings(PolicySettings, SpeechSettings, SentenceSettings):
    """Every seqpo setting a simulstream config may hold; `audio_chunk` is its `speech_chunk_size`."""

    max_sentence_words: int = setting(200, "slots decoding: close a sentence after this many source units (its "
                                      "region of reserved positions is sized for this many)")


# simulstream's own keys: the processor class and chunk size, and what its scoring commands read
# from an --eval-config (so this one file can be both)
SIMULSTREAM_KEYS = ("type", "speech_chunk_size", "detokenizer_type", "latency_unit")
# seqpo settings a simulstream config cannot hold, and why
REFUSED = {"audio_chunk": "simulstream's speech_chunk_size is the audio chunk",
           "lookahead": "look-ahead needs the whole source in advance",
           "write_ahead": "write-ahead needs the whole source in advance"}


def seqpo_values(config: SimpleNamespace) -> dict:
    """The seqpo settings of a simulstream config (a SimpleNamespace of its YAML), checked: an
    unknown or refused key, or a value of the wrong type, is a one-line error."""
    raw = {str(k).replace("-", "_"): v for k, v in vars(config).items()}
    for key, why in REFUSED.items():
        if key in raw:
            raise SettingsError(f"simulstream config: setting '{key}' cannot be given ({why})")
    chunk = raw.get("speech_chunk_size")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, float)) or chunk <= 0:
        raise SettingsError(f"simulstream config: speech_chunk_size (seconds of audio per chunk) must be a positive "
                            f"number, got {chunk!r}")
    if raw.get("detokenizer_type", "simuleval") != "simuleval":
        raise SettingsError("simulstream config: seqpo writes whole units: detokenizer_type must be simuleval")
    ours = {k: v for k, v in raw.items() if k not in SIMULSTREAM_KEYS}
    values = config_values(ProcessorSettings, ours, "simulstream config")
    values["audio_chunk"] = float(chunk)
    return values


def processor_settings(values: dict, pair: str | None = None) -> ProcessorSettings:
    """The settings of a stream of `pair` (None: the config's, else the default), checked as the
    speech commands check theirs."""
    values = dict(values) if pair is None else {**values, "pair": pair}
    try:
        settings = ProcessorSettings(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"simulstream config: {exc}") from exc
    settings.check_policy()
    check_at_least(settings, 1, "max_sentence_units", "max_sentence_words")
    return settings


class TalkText:
    """A talk's target units as simulstream is told them: every finished sentence's, then the open
    sentence's (for re-translation, its latest display). `output` answers what changed since the
    last answer: the units taken back and the units written, from the first unit any step
    changed, so every unit a step (re)wrote is dated by this call, as `stream.retranslation_delays`
    dates it."""

    def __init__(self, unit: str):
        self.unit = unit
        self.closed: list[str] = []  # units of finished sentences
        self.open: list[str] = []  # units of the open sentence
        self.sent: list[str] = []  # units simulstream has
        self.changed = 0  # first unit changed since the last output
        self.last = IncrementalOutput([], "", [], "")

    def step(self, step: Step) -> None:
        if step.display is not None:  # re-translation: the open sentence shown anew
            units = split_units(step.display, self.unit)
            keep = common_prefix(self.open, units)
        else:
            units = self.open + split_units(step.written, self.unit)
            keep = len(self.open)
        self.changed = min(self.changed, len(self.closed) + keep)
        self.open = units

    def close_sentence(self) -> None:
        self.closed += self.open
        self.open = []

    def output(self) -> IncrementalOutput:
        units, cut = self.closed + self.open, self.changed
        deleted, new = self.sent[cut:], units[cut:]
        self.sent, self.changed = units, len(units)
        self.last = IncrementalOutput(new, self._string(new, cut), deleted, self._string(deleted, cut))
        return self.last

    def string_of(self, units: list[str]) -> str:
        """simulstream's `tokens_to_string` when it merges outputs: the last output's strings (with
        their spaces) for its units, else the units joined."""
        if units == self.last.new_tokens:
            return self.last.new_string
        if units == self.last.deleted_tokens:
            return self.last.deleted_string
        return join_units(units, self.unit)

    def _string(self, units: list[str], after: int) -> str:
        """Text of `units` following `after` units: a word after another one needs its space."""
        text = join_units(units, self.unit)
        return " " + text if text and after and self.unit == "word" else text


@dataclass
class PairParts:
    """What the streams of one pair run on: their settings, policy, generator and sentence rules."""

    settings: ProcessorSettings
    pair: LanguagePair
    policy: object
    generator: object
    cascade_args: dict


class SeqpoSpeechProcessor(SpeechProcessor):
    """simulstream's `SpeechProcessor` over seqpo's speech cascade (see the module docstring)."""

    whispers: ClassVar[dict] = {}  # --asr name -> Whisper, shared by every processor of the process
    models: ClassVar[dict[tuple, LoadedModel]] = {}  # (model, adapter, dtype, device, chat template, decoding) -> loaded

    @classmethod
    def load_model(cls, config: SimpleNamespace) -> None:
        """Check the config (simulstream calls this before every processor it builds), load Whisper
        and, when the config names the pair, its model."""
        try:
            values = seqpo_values(config)
            settings = processor_settings(values)
            settings.check_speech(check_supported(parse_pair(settings.pair)))
            cls.shared_whisper(settings.asr)
            if "pair" in values:  # else the pair comes with each stream (simulstream's --tgt-lang)
                cls.loaded(settings)
        except SeqpoError as exc:
            # simulstream calls this at start-up, before serving or reading any audio: a config
            # error ends it here in one line, as the seqpo commands do, not in a traceback
            print(f"seqpo ({cls.__name__}): error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None

    @classmethod
    def shared_whisper(cls, name: str):
        if name not in cls.whispers:
            cls.whispers[name] = load_whisper(name=name)
        return cls.whispers[name]

    @classmethod
    def loaded(cls, settings: ProcessorSettings) -> LoadedModel:
        key = (settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template,
               settings.decoding, settings.quantize, settings.vocab)
        if key not in cls.models:
            cls.models[key] = load_model(*key)
        return cls.models[key]

    def __init__(self, config: SimpleNamespace):
        super().__init__(config)
        self.values = seqpo_values(config)
        self.parts: dict[str, PairParts] = {}  # by pair, built on its first stream
        self.source_lang: str | None = None
        self.target_lang: str | None = None
        self.cascade: SpeechCascade | None = None
        self.text: TalkText | None = None
        self.clear()

    # -- languages: simulstream sets them (per stream) before the audio ------------------------------
    def set_source_language(self, language: str) -> None:
        self.source_lang = language
        self._pair_parts()  # a wrong language fails, and a new pair's model loads, before the audio

    def set_target_language(self, language: str) -> None:
        self.target_lang = language
        self._pair_parts()

    def _pair(self) -> str | None:
        """The stream's pair: the config's (which simulstream's languages must agree with), else
        from simulstream's languages, else None (the settings' default)."""
        given = self.values.get("pair")
        if given is None:
            if self.target_lang is None:
                return None
            return f"{self.source_lang or 'en'}-{self.target_lang}"
        ours = parse_pair(given)
        for lang, code, flag in ((self.source_lang, ours.source, "--src-lang"),
                                 (self.target_lang, ours.target, "--tgt-lang")):
            if lang is not None and lang != code:
                raise SettingsError(f"the simulstream config's pair {given} does not match {flag} {lang}")
        return given

    def _pair_parts(self) -> PairParts:
        pair = self._pair()
        if pair not in self.parts:
            settings = processor_settings(self.values, pair)
            whisper = self.shared_whisper(settings.asr)
            pair_of, policy, _, generator = speech_parts(settings, self.loaded(settings), whisper)
            if getattr(self.config, "latency_unit", pair_of.target_unit) != pair_of.target_unit:
                # simulstream's scorers would count other units than seqpo writes
                raise SettingsError(f"{pair_of.target} targets are written in {pair_of.target_unit}s: the config's "
                                    f"latency_unit must be {pair_of.target_unit}")
            args = sentence_rows(settings, pair_of, generator)
            # a sentence closes at . ? ! or max_sentence_units (as long-form eval cuts a talk), and
            # under slots decoding at max_sentence_words (its reserved region) too
            limits = [n for n in (settings.max_sentence_units, args.pop("max_units", None)) if n]
            args["max_units"] = min(limits)
            self.parts[pair] = PairParts(settings, pair_of, policy, generator, args)
        return self.parts[pair]

    # -- the stream ----------------------------------------------------------------------------------
    def _open_cascade(self) -> SpeechCascade:
        """The talk's cascade, opened at its first audio (again after an `end_of_stream` that more
        audio follows, as simulstream's VAD wrapper sends: the talk's text goes on)."""
        if self.cascade is None:
            parts = self._pair_parts()
            s = parts.settings
            if self.text is None:
                self.text = TalkText(parts.pair.target_unit)
            text = self.text
            asr = streaming_asr(self.shared_whisper(s.asr), s, parts.pair.source)
            self.cascade = SpeechCascade(asr, parts.pair, parts.policy, parts.generator,
                                         s.chunk, on_step=lambda _live, step: text.step(step),
                                         on_done=lambda _episode, _words: text.close_sentence(), **parts.cascade_args)
        return self.cascade

    def process_chunk(self, waveform: np.float32) -> IncrementalOutput:
        self._open_cascade().feed(np.asarray(waveform, dtype=np.float32))
        if len(waveform) < round(self.speech_chunk_size * SAMPLE_RATE) - 1:  # 1 sample: resampling's rounding
            # Shorter than a chunk: the rest of the audio, which simulstream sends from its
            # end_of_stream just before calling ours, merging the two outputs
            # (`merge_incremental_outputs`). simulstream 1.0.0's merge drops the units the second
            # takes back when the first wrote none, and rebuilds the strings with
            # `tokens_to_string`, which cannot know a word's leading space. So the talk is finished
            # here: end_of_stream adds nothing, and the merge keeps this output as it is.
            self._finish()
        return self.text.output()

    def end_of_stream(self) -> IncrementalOutput:
        if self.cascade is not None:
            self._finish()
        return self.text.output() if self.text is not None else IncrementalOutput([], "", [], "")

    def _finish(self) -> None:
        self.cascade.finish()
        self.cascade = None

    def tokens_to_string(self, tokens: list[str]) -> str:
        if self.text is not None:
            return self.text.string_of(tokens)
        return join_units(tokens, self._pair_parts().pair.target_unit)

    def clear(self) -> None:
        """Ready for a new talk: the open sentence's engine episode is freed, languages forgotten."""
        if self.cascade is not None:
            self.cascade.drop_sentence()
        self.cascade, self.text = None, None
        self.source_lang = self.target_lang = None


def write_talks(long_form: str | Path, audio_dir: str | Path, pair: str, out: str | Path) -> dict:
    """simulstream's inputs for the talks `seqpo eval --long-form FILE --audio-dir DIR` hears: in
    OUT, one wav per stream (its lines' audio joined, 16 kHz 16-bit, `NNNN.wav` for stream NNNN),
    `talks.txt` (simulstream_inference's --wav-list-file), `talks.yaml` (the scorers'
    --audio-definition: each reference sentence's wav, offset and duration in s) and
    `reference.<tgt>` (their --reference, one sentence per line)."""
    lang_pair = check_supported(parse_pair(pair))
    if not Path(long_form).is_file():
        raise InputFileError(f"long-form file not found: {long_form}")
    streams = read_long_form(long_form)
    spoken = spoken_streams(audio_dir, streams, lang_pair)  # every file checked before any is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wavs, definition, references = [], [], []
    for stream in streams:
        talk = spoken[stream.index]
        wav = out / f"{stream.index:04d}.wav"
        write_wav(wav, talk.samples())
        wavs.append(wav.name)
        for sentence in talk.sentences:
            definition.append({"wav": wav.name, "offset": sentence.source_offset / 1000.0,
                               "duration": sentence.source_length / 1000.0})
            references.append(" ".join(sentence.reference.split()))
    write_atomic(out / "talks.txt", "".join(f"{name}\n" for name in wavs))
    write_atomic(out / "talks.yaml", yaml.safe_dump(definition, sort_keys=False))
    write_atomic(out / f"reference.{lang_pair.target}", "".join(f"{r}\n" for r in references))
    return {"talks": len(wavs), "sentences": len(references), "folder": str(out)}


__all__ = ["ProcessorSettings", "SeqpoSpeechProcessor", "TalkText", "processor_settings", "seqpo_values", "write_talks"]
