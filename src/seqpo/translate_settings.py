"""The settings of `seqpo translate` (a config dataclass beside its command, as TRL's): torch-free,
so `seqpo --help` builds its flags without loading a model runtime."""

from __future__ import annotations

from dataclasses import dataclass

from .config import PolicySettings, SpeakerClockSettings, SpeechSettings, setting
from .sentences import SentenceSettings


@dataclass
class TranslateSettings(SpeakerClockSettings, PolicySettings, SpeechSettings, SentenceSettings):
    text: str = setting(None, "text to translate, one sentence per line (default: read stdin)")
    audio: str = setting(None, "translate speech from this audio file instead of text (wav, flac, "
                         "mp3, m4a, ogg, ...; any rate and channels; streaming Whisper, see --asr; needs the "
                         "speech extra)")
    long_form: bool = setting(False, "the text is one unsegmented stream: cut it into sentences (. ? ! or "
                              "--max-sentence-units) and translate them one after another")
    json: bool = setting(False, "print one JSON event per step instead of the live view")
    subtitles: str = setting(None, "also write subtitles to this file, SubRip (.srt) or WebVTT (.vtt) by its "
                             "suffix: one cue per translated sentence, from its first write to its last, in ms "
                             "of audio (--audio) or of the text spoken at --unit-ms per source unit")
    max_chars: int = setting(20000, "refuse inputs longer than this many characters")
    max_sentence_words: int = setting(200, "speech input with --decoding slots: close a sentence after this many "
                                      "words as if it ended (its source region is reserved for that many)")
