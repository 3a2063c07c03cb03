"""`seqpo translate --audio FILE` (any audio format): the speech cascade with the same events as text input
(write/wait per policy step, each with `audio_ms`; one `done` per sentence, latency in ms)."""

from __future__ import annotations

import json

from ..engine import engine_class
from ..errors import SettingsError
from ..events import done_event, step_event
from ..languages import LanguagePair, parse_pair
from ..live_engines import EngineSet, live_completer
from ..live_view import LiveView
from ..model import load_model
from ..prompts import check_supported
from ..stream import Episode
from ..subtitles import episode_cues, write_subtitles
from .asr import load_whisper, streaming_asr
from .audio import ms_of, read_audio
from .cascade import SpeechCascade, stream_audio


def speech_parts(settings, loaded=None, whisper=None):
    """The pair, policy, Whisper and text generator a speech command needs, checked before any
    model is loaded (`loaded` and `whisper`: already loaded ones). With append/slots/cached
    decoding the generator is an `EngineSet` whose streams are the cascade's sentences
    (`sentence_rows`; `seqpo eval` refuses slots for speech, in `EvalSettings.validate`)."""
    pair = check_supported(parse_pair(settings.pair))
    settings.check_speech(pair)
    if settings.chunk < 1 or settings.k < 1 or settings.slot < 1:
        raise SettingsError("--chunk, --k and --slot must be at least 1")
    policy = settings.build_policy()
    whisper = whisper or load_whisper(name=settings.asr)
    if loaded is None:
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device,
                            settings.chat_template, settings.decoding, settings.quantize, settings.vocab)
    return pair, policy, whisper, live_completer(loaded, settings.decoding, settings.slot)


def sentence_rows(settings, pair: LanguagePair, generator) -> dict:
    """`SpeechCascade` arguments that make each sentence an engine episode (cached/append/slots:
    `new_row`; slots also closes a sentence at `--max-sentence-words`, the length its region is
    reserved for); none for re-encode."""
    if not isinstance(generator, EngineSet):  # re-encode, or a completer with its own cache (llama.cpp)
        return {}
    if not engine_class(settings.decoding).reserves_source:
        return dict(new_row=lambda: generator.open_row(pair, None, settings.use_few_shot(), None))
    limit = settings.max_sentence_words
    return dict(max_units=limit, new_row=lambda: generator.open_row(pair, None, settings.use_few_shot(), limit))


def translate_audio(settings, out) -> list[Episode]:
    samples = read_audio(settings.audio)  # a bad file fails before any model loads
    if settings.max_sentence_words < 1:
        raise SettingsError("--max-sentence-words must be at least 1")
    pair, policy, whisper, generator = speech_parts(settings)
    asr = streaming_asr(whisper, settings, pair.source)
    engine_args = sentence_rows(settings, pair, generator)

    def run(cascade) -> list[Episode]:
        episodes = stream_audio(samples, cascade, settings.audio_chunk)
        if settings.subtitles is not None:
            write_subtitles(settings.subtitles, episode_cues(episodes, end_ms=ms_of(len(samples))))
        return episodes

    if settings.json:
        def emit(live, step):
            print(json.dumps(step_event(live.episode, step), ensure_ascii=False), file=out, flush=True)

        def done(episode, _words):
            print(json.dumps(done_event(episode), ensure_ascii=False), file=out, flush=True)

        cascade = SpeechCascade(asr, pair, policy, generator, settings.chunk, on_step=emit, on_done=done, **engine_args)
        return run(cascade)

    view = LiveView(pair, policy.settings())
    current = []

    def show(live, step):
        if not current or current[-1] is not live:
            current.append(live)
            view.start(live.text, settings.chunk)
        view.grow(live.text)
        view.update(live.episode, step)

    with view:
        cascade = SpeechCascade(asr, pair, policy, generator, settings.chunk, on_step=show,
                                on_done=lambda episode, _words: view.finish(episode, done_event(episode)),
                                **engine_args)
        return run(cascade)
