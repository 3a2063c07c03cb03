"""`seqpo serve`: a live translation server (FastAPI + uvicorn) with a web page.

WebSocket `/ws/translate` streams a speaker's text through a policy and answers every step
(protocol in `protocol.py`; speech as binary PCM frames, `audio.py`); `POST /translate`
runs one sentence, `POST /translate/audio` an uploaded wav; `/health`, `/metrics`
(Prometheus) and the page at `/` (static files, no build step). All model work goes through one
worker (`worker.py`) that batches the sessions' steps fairly; `--decoding append|slots` runs each
live sentence as an episode of the streaming engine (`seqpo.live_engines`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import PolicySettings, SpeechSettings, check_at_least, resolve_adapter_setting, setting, uses_few_shot
from ..errors import SettingsError
from ..languages import parse_pair
from ..prompts import check_supported, supported_pairs
from ..requests import NO_ADAPTER
from ..sentences import SentenceSettings


@dataclass
class ServeSettings(PolicySettings, SpeechSettings, SentenceSettings):
    """pair, policy, k and chunk are a session's defaults; a client's start message may choose others."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = setting(8000, "TCP port")
    pair: str = setting("en-de", "default language pair of a session (a client's start may choose another)")
    batch_size: int = setting(8, "most model requests (from different sessions) run in one model call")
    queue_size: int = setting(64, "most model requests waiting; beyond it a step is refused as busy")
    max_message_bytes: int = setting(16384, "largest client message accepted (bytes)")
    max_sentence_words: int = setting(200, "longest sentence accepted, in source units (words or characters)")
    max_sentence_chars: int | None = setting(None, "longest sentence accepted, in characters with spaces (text "
                                             "without spaces adds no units); default: 16 per --max-sentence-words")
    long_form: bool = setting(False, "text sessions are one unsegmented stream by default: the server closes a "
                              "sentence at . ? ! or after --max-sentence-units units, and an end ends the "
                              "stream (a client's start may say long_form true or false)")
    max_sessions: int = setting(64, "most WebSocket sessions open at once; more are refused as busy")
    max_requests: int = setting(16, "most POST /translate and /translate/audio requests served at once; more "
                                "are refused as busy (503) before their body is read")
    max_queued_sentences: int = setting(8, "most sentences of one WebSocket session waiting for their "
                                        "translation; more are refused as busy")
    allow_origin: tuple[str, ...] = setting((), "a web page origin (scheme://host:port) that may use this "
                                            "server besides its own page, e.g. http://localhost:3000 (repeat "
                                            "for several; '*' for any). Browsers send Origin; other clients "
                                            "send none and are always served", action="append")
    allow_host: tuple[str, ...] = setting((), "a host name (or address) clients may reach this server by, "
                                          "besides localhost, 127.0.0.1, [::1] and --host, e.g. the name of "
                                          "this machine with --host 0.0.0.0 (any port; repeat for several; "
                                          "'*.example.com' for its subdomains, '*' for any). Other Host "
                                          "headers are refused (421), against DNS rebinding", action="append")
    idle_timeout: float = setting(300.0, "close a WebSocket after this many seconds without a client message "
                                  "(not counting time its sentences are being translated)")
    max_audio_seconds: float = setting(600.0, "speech: most audio accepted per session or upload (seconds)")
    max_audio_frame_bytes: int = setting(65536, "speech: largest binary audio frame accepted (bytes; 0.5 s of "
                                         "16 kHz 16-bit PCM is 16000)")
    max_audio_sessions: int = setting(4, "speech: most audio streams (WebSocket or upload) transcribed at once")
    asr_every_frame: bool = setting(False, "speech: decode after every audio frame even when transcription lags "
                                    "(the transcript then does not depend on machine load, but the lag can grow); "
                                    "default: frames that arrived while the ASR was busy are decoded together")
    log_level: str = setting("warning", "uvicorn log level", choices=["critical", "error", "warning", "info", "debug"])

    def __post_init__(self):
        self.adapter_given = self.adapter  # as given, before PolicySettings resolves it for the default pair
        super().__post_init__()
        if self.max_sentence_chars is None:
            self.max_sentence_chars = 16 * self.max_sentence_words
        # pair -> name of the adapter its sessions run on, when serve() loads one adapter per pair;
        # empty: one adapter (or none) for every session, as `--adapter` says
        self.session_adapters: dict[str, str] = {}

    def shipped_adapters(self) -> dict[str, str]:
        """pair -> shipped adapter folder for every supported pair that has one: the server's adapters
        when no --adapter was given on the bundled model (an explicit --adapter serves every pair)."""
        if self.adapter_given is not None:
            return {}
        shipped = {str(p): resolve_adapter_setting(None, str(p), self.model) for p in supported_pairs()}
        return {pair: adapter for pair, adapter in shipped.items() if adapter}

    def session_adapter(self, pair: str) -> str | None:
        """The `Request.adapter` of a session of `pair`: its own adapter, or the bare model for a pair
        without one; None (the model as loaded) when the server runs one adapter for every pair."""
        if not self.session_adapters:
            return None
        return self.session_adapters.get(pair, NO_ADAPTER)

    def session_few_shot(self, pair: str) -> bool:
        """Few-shot examples only for a session on the bare model (unless --few-shot says otherwise)."""
        return uses_few_shot(self.few_shot, self.session_adapters.get(pair) if self.session_adapters else self.adapter)


def serve(settings: ServeSettings) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn  # start-up cost: only serving needs the web server

    uvicorn.run(build_app(settings), **uvicorn_options(settings))


def build_app(settings: ServeSettings):
    """The server's ASGI app with its model loaded (what `serve` runs; a test client can call it)."""
    from ..generation import completer_for  # start-up cost: torch (~3 s); --help needs only the settings
    from ..model import load_model, load_model_adapters  # start-up cost: as Generator
    from .admission import host_names  # start-up cost: starlette, part of the web stack below
    from .app import create_app  # start-up cost: the web stack (fastapi, pydantic, starlette) takes ~0.5 s

    check_supported(parse_pair(settings.pair))
    host_names(settings.host, settings.allow_host)  # a bad --allow-host fails before the model loads
    settings.check_policy()
    check_at_least(settings, 1, "batch_size", "queue_size", "max_message_bytes", "max_sentence_words", "port",
                   "max_audio_frame_bytes", "max_audio_sessions", "max_sentence_chars", "max_sessions",
                   "max_queued_sentences", "asr_beam", "max_sentence_units", "max_requests")
    if settings.idle_timeout <= 0 or settings.max_audio_seconds <= 0:
        raise SettingsError("--idle-timeout and --max-audio-seconds must be positive")
    if settings.audio_chunk <= 0 or settings.max_buffer <= settings.audio_chunk:
        raise SettingsError("--audio-chunk must be positive, --max-buffer longer than it")
    shipped = settings.shipped_adapters()
    if shipped:  # bundled model, no --adapter: every session runs on the adapter of its own pair
        loaded = load_model_adapters(settings.model, shipped, settings.dtype, settings.device, settings.quantize,
                                     settings.decoding, settings.vocab)
        settings.session_adapters = {pair: pair for pair in shipped}
    else:  # --adapter DIR (every pair on it), --adapter none, or another model: one model for all
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device,
                            settings.chat_template, settings.decoding, settings.quantize, settings.vocab)
    generator = completer_for(loaded.model, loaded.tokenizer, batch_size=settings.batch_size, chat=loaded.chat)
    return create_app(settings, generator, model_name=loaded.name)


def uvicorn_options(settings: ServeSettings) -> dict:
    """How uvicorn serves the app: where, and the largest WebSocket frame it reads at all (a larger
    one closes the connection, 1009, before it is buffered: the larger of the two message limits)."""
    return {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
            "ws_max_size": max(settings.max_message_bytes, settings.max_audio_frame_bytes)}


__all__ = ["ServeSettings", "build_app", "serve", "uvicorn_options"]
