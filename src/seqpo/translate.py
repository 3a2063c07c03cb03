"""`seqpo translate`: stream sentences through a policy and show (or emit as JSON) every step."""

from __future__ import annotations

import json
import sys

from .engine import make_engine
from .errors import InputFileError, SettingsError
from .events import done_event, step_event
from .languages import parse_pair
from .live_view import LiveView
from .model import load_model
from .prompts import check_supported
from .sentences import split_sentences
from .simulate import stream_text
from .speech.translate import translate_audio
from .stream import Episode
from .translate_settings import TranslateSettings
from .subtitles import episode_cues, subtitle_format, write_subtitles


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
                        settings.decoding, settings.quantize, settings.vocab)
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
