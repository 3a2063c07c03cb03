"""The WebSocket protocol of `/ws/translate`: the messages, and the checks that turn a client's
frame and a start message (or a POST body) into settings.

Client -> server (JSON text frames):
  {"type": "start", "pair": "en-de", "policy": "llm", "k": 3, "chunk": 1}   (all but type optional)
  {"type": "source", "text": "..."}   text as it arrives; a word counts once whitespace follows it
  {"type": "end"}                     the sentence is complete
  Long-form text: {"type": "start", "long_form": true, ...} (the default under `seqpo serve
  --long-form`; false asks for sentences) makes `source` one unsegmented stream: the server closes
  a sentence at a unit ending in . ? ! (a word once whitespace follows it; each character of a
  zh/ja source) or after --max-sentence-units units (`sentences.SentenceCutter`, the rule of
  `seqpo translate --long-form`), and the text after it starts the next sentence; {"type": "end"}
  ends the stream, closing its open sentence (none if it ended at a sentence end), and is answered
  by a stream_end once every sentence of the stream is done or dropped.
  Speech: {"type": "start", "input": "audio", "sample_rate": 16000, ...} (English source pairs),
  then binary frames of 16-bit little-endian mono PCM at 16 kHz; {"type": "end"} ends the audio.
Server -> client:
  {"type": "ready", ...settings, "long_form"[, "max_sentence_units"]}   after each text start
  {"type": "write", "sentence", "text", "read", "target", "elapsed_ms", "latency_ms"}
  {"type": "wait", "sentence", "read", "elapsed_ms", "latency_ms"}
  {"type": "update", "sentence", "display", "read", "elapsed_ms", "latency_ms"}   policy retranslate:
                                      every step; `display` replaces the translation shown
  {"type": "done", "sentence", "source", "prediction", "delays", "AL", "LAAL", "wait_fraction"}
  {"type": "stream_end", "sentences", "dropped"}   long-form: after the last sentence of a stream
  {"type": "error", "code", "message"[, "sentence"]}   the connection stays usable
Limits: a frame over the larger of --max-message-bytes and --max-audio-frame-bytes closes the
connection (1009, before it is read); a smaller one over its own limit is a too_large error. Beyond
--max-sessions open sessions a new one gets a busy error and is closed (1013); a session with
--max-queued-sentences sentences waiting refuses the next (busy, its source ignored up to its
end, which in a long-form stream is where the server closes it: the stream goes on with the next).
A sentence over --max-sentence-words units or --max-sentence-chars characters is too_long.
A handshake from a web page of another origin, or naming a Host the server does not answer to
(--allow-host), is refused (403; see admission.py).
  Speech adds {"type": "word", "sentence", "text", "start_ms", "end_ms", "known_ms"} per stable
  word, `audio_ms` on steps, speech latency (ms) on done, and {"type": "audio_end", "audio_ms",
  "sentences", "transcript", "asr_ms"} once the end has been flushed (see audio.py).

Where each part runs: `connection.py` receives frames and answers them, `sessions.py` holds what
a start began (text, long-form text or audio), `steps.py` steps the sentences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..config import check_asr_language
from ..driver import EpisodeRun
from ..engine import REFERENCE_MODE
from ..errors import SeqpoError, SettingsError
from ..events import done_event, step_event
from ..languages import parse_pair
from ..policies import POLICY_NAMES, check_decoding
from ..prompts import check_supported
from ..stream import Step


class ProtocolError(SeqpoError):
    """A client message the server cannot act on; `code` names the kind for clients."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class SessionConfig:
    pair: str
    policy: str
    k: int
    chunk: int
    few_shot: bool = True
    adapter: str | None = None  # Request.adapter of the session's steps (None: the model as loaded)


def parse_message(text: str, max_bytes: int) -> dict:
    """A client's JSON text frame as a message (a dict; its `type` is checked by the caller)."""
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ProtocolError("too_large", f"message of {size} bytes; the limit is {max_bytes}")
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"malformed JSON: {exc}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object with a 'type'")
    return msg


def parse_config(msg: dict, defaults) -> SessionConfig:
    """Settings of a start message (or a POST body), falling back to the server's settings."""
    pair = msg.get("pair", defaults.pair)
    policy = msg.get("policy", defaults.policy)
    if not isinstance(pair, str):
        raise ProtocolError("bad_pair", "pair must be a string like 'en-de'")
    try:
        pair = str(check_supported(parse_pair(pair)))
    except SeqpoError as exc:
        raise ProtocolError("bad_pair", str(exc)) from exc
    if policy not in POLICY_NAMES:
        raise ProtocolError("bad_policy", f"unknown policy {policy!r} (choose from {', '.join(POLICY_NAMES)})")
    try:
        check_decoding(policy, getattr(defaults, "decoding", REFERENCE_MODE))
    except SeqpoError as exc:
        raise ProtocolError("bad_policy", str(exc)) from exc
    numbers = {}
    for name in ("k", "chunk"):
        value = msg.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ProtocolError("bad_value", f"{name} must be an integer from 1 to 64")
        numbers[name] = value
    if hasattr(defaults, "session_adapter"):  # ServeSettings: per-pair adapters
        adapter, few_shot = defaults.session_adapter(pair), defaults.session_few_shot(pair)
    else:
        adapter, few_shot = None, defaults.use_few_shot()
    return SessionConfig(pair, policy, **numbers, few_shot=few_shot, adapter=adapter)


def parse_speech_config(msg: dict, defaults) -> SessionConfig:
    """`parse_config` for audio input (a microphone stream or an upload): the pair's source must be
    a language the server's `--asr` hears (`bad_pair`)."""
    config = parse_config(msg, defaults)
    try:
        check_asr_language(defaults.asr, parse_pair(config.pair))
    except SettingsError as exc:
        raise ProtocolError("bad_pair", str(exc)) from exc
    return config


def step_payload(index: int, live: EpisodeRun, step: Step, latency_ms: float) -> dict:
    return {**step_event(live.episode, step), "sentence": index, "latency_ms": round(latency_ms, 1)}


def done_payload(index: int, live: EpisodeRun) -> dict:
    return {**done_event(live.episode), "sentence": index}
