"""The settings of `seqpo eval` (a config dataclass beside its command, as TRL's): torch-free,
so `seqpo --help` builds its flags without loading the evaluator."""

from __future__ import annotations

from dataclasses import dataclass

from .config import PolicySettings, SpeakerClockSettings, SpeechSettings, check_at_least, setting
from .errors import InputFileError, SettingsError
from .languages import LanguagePair, parse_pair
from .prompts import check_supported
from .sentences import SentenceSettings


@dataclass
class EvalSettings(SpeakerClockSettings, PolicySettings, SpeechSettings, SentenceSettings):
    src: str = setting(None, "source file, one sentence per line (with --audio-dir: the transcripts, "
                       "default DIR/source.en)")
    ref: str = setting(None, "reference file, aligned with --src line by line (with --audio-dir: "
                       "default DIR/reference.<target language>)")
    audio_dir: str = setting(None, "evaluate on speech in the source language (see --asr): a folder of audio "
                             "files (wav, flac, mp3, m4a, ogg, opus), one sentence each in name order (see `seqpo data "
                             "speech`); latency in ms of audio")
    long_form: str = setting(None, "evaluate on unsegmented streams instead: a `seqpo data long-form` JSONL file; "
                             "the system cuts its own sentences; OUT/streams.jsonl and StreamLAAL scores "
                             "(--limit counts streams); with --audio-dir, spoken: DIR is the `seqpo data "
                             "speech` folder of the same --src, NNNN.wav line NNNN, latency in ms")
    limit: int = setting(None, "evaluate only the first N lines")
    out: str = setting(None, "output folder for instances.jsonl and scores.json (resumes if present)")
    comet: str = setting(None, "path to a local unbabel-comet checkpoint to also report COMET")
    batch_size: int = setting(8, "sentences decoded together (batched model calls)")

    def validate(self) -> LanguagePair:
        pair = check_supported(parse_pair(self.pair))
        if self.audio_dir:
            from .engine import engine_class  # start-up cost: the engine package loads torch (~3 s)

            self.check_speech(pair)
            if engine_class(self.decoding).reserves_source:  # a sentence's source region is reserved in advance
                raise SettingsError(f"speech evaluation does not support --decoding {self.decoding}: "
                                    "use cached, reencode or append")
        for name in ("out",) if self.audio_dir or self.long_form else ("src", "ref", "out"):
            if not getattr(self, name):
                raise InputFileError(f"--{name} is required")
        self.check_policy()
        check_at_least(self, 1, "batch_size", "limit", "max_sentence_units")
        return pair
