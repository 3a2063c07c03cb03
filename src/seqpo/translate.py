"""`seqpo translate`: stream sentences through a policy and show (or emit as JSON) every step."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from .config import PolicySettings, SpeakerClockSettings, SpeechSettings, setting
from .engine import make_engine
from .errors import InputFileError, SettingsError
from .events import done_event, step_event
from .languages import parse_pair
from .live_view import LiveView
from .model import load_model
from .prompts import check_supported
from .sentences import SentenceSettings, split_sentences
from .simulate import stream_text
from .speech.translate import translate_audio
from .stream import Episode
from .subtitles import episode_cues, subtitle_format, write_subtitles


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


def read_input(settings: TranslateSettings) -> list[str]:
    text = settings.text if settings.text is not None else sys.stdin.read()
    if len(text) > settings.max_chars:
        raise InputFileError(f"input has {len(text)} characters; the limit is {settings.max_chars} (--max-chars)")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputFileError("nothing to translate: the input is empty")
    return lines


def translate(settings: TranslateSettings, out=None) -> list[Episode]:
    out = out or sys.stdout
    if settings.subtitles is not None:
        subtitle_format(settings.subtitles)  # a bad name fails before any model loads
    if settings.unit_ms <= 0:
        raise SettingsError("--unit-ms must be positive")
    if settings.audio is not None:
        return translate_audio(settings, out)
    pair = check_supported(parse_pair(settings.pair))
    settings.check_policy()
    lines = read_input(settings)
    if settings.long_form:
        lines = [text for _, text in split_sentences("\n".join(lines), pair.source_unit, settings.max_sentence_units)]
    policy = settings.build_policy()
    loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template,
                        settings.decoding, settings.quantize)
    generator = make_engine(loaded, settings.decoding, settings.slot, batch_size=1, few_shot=settings.use_few_shot(),
                            lookahead=settings.lookahead, write_ahead=settings.write_ahead)
    episodes = []
    if settings.json:
        for line in lines:
            def emit(_key, episode, step):
                print(json.dumps(step_event(episode, step), ensure_ascii=False), file=out, flush=True)

            ep = stream_text(line, policy, generator, pair, settings.chunk, on_step=emit)
            print(json.dumps(done_event(ep), ensure_ascii=False), file=out, flush=True)
            episodes.append(ep)
        return with_subtitles(settings, episodes)

    view = LiveView(pair, policy.settings())
    with view:
        for line in lines:
            view.start(line, settings.chunk)
            ep = stream_text(line, policy, generator, pair, settings.chunk,
                             on_step=lambda _k, e, s: view.update(e, s))
            view.finish(ep, done_event(ep))
            episodes.append(ep)
    return with_subtitles(settings, episodes)


def with_subtitles(settings: TranslateSettings, episodes: list[Episode]) -> list[Episode]:
    """Text input: write `--subtitles` (on the `--unit-ms` clock), if asked; the episodes, unchanged."""
    if settings.subtitles is not None:
        write_subtitles(settings.subtitles, episode_cues(episodes, settings.unit_ms))
    return episodes
