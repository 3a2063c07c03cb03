"""What a WebSocket start begins: a text session (sentences the client ends, or one long-form
stream the server cuts into sentences) or an audio session (PCM frames through the speech
cascade, `audio.AudioStream`). A new start ends the connection's session and abandons its
unfinished sentences; the messages are in `protocol.py`."""

from __future__ import annotations

from dataclasses import asdict

from ..driver import SentenceTooLongError
from ..errors import SeqpoError
from ..languages import parse_pair
from ..sentences import SentenceCutter
from ..speech.audio import pcm16_to_float
from .audio import SAMPLE_RATE, AudioStream
from .protocol import ProtocolError, SessionConfig, parse_config, parse_speech_config
from .worker import Busy


class TextSession:
    """Source text of `config`'s pair; with a `cutter` (long-form) one stream the server cuts into
    sentences, else sentences the client ends."""

    busy = False  # nothing of its own runs besides the connection's stepper

    def __init__(self, conn, config: SessionConfig, cutter: SentenceCutter | None):
        self.conn, self.config, self.cutter = conn, config, cutter
        self.queue = conn.queue
        self.refusing = False  # a sentence was refused (too many waiting): ignore its source up to its end

    @classmethod
    def start(cls, conn, msg: dict) -> TextSession:
        """A start with input text (the default), checked before it ends the connection's session."""
        settings = conn.settings
        if msg.get("input", "text") != "text":
            raise ProtocolError("bad_input", f"input must be 'text' or 'audio', not {msg.get('input')!r}")
        config = parse_config(msg, settings)
        long_form = msg.get("long_form", settings.long_form)
        if not isinstance(long_form, bool):
            raise ProtocolError("bad_value", "long_form must be true or false")
        conn.end_session()
        # a sentence is cut where the rule says, at the latest when it would pass --max-sentence-words
        most = min(settings.max_sentence_units, settings.max_sentence_words)
        cutter = SentenceCutter(parse_pair(config.pair).source_unit, most) if long_form else None
        conn.queue.abandon()
        return cls(conn, config, cutter)

    def ready(self) -> dict:
        ready = {"type": "ready", **asdict(self.config), "input": "text", "long_form": self.cutter is not None}
        if self.cutter is not None:
            ready["max_sentence_units"] = self.cutter.max_units
        return ready

    async def source(self, msg: dict) -> None:
        text = msg.get("text")
        if not isinstance(text, str):
            raise ProtocolError("bad_message", "a source message needs a string 'text'")
        if self.cutter is None:
            await self.feed(text)
            return
        # a closing piece and its end reach the stepper together (feed awaits only to send an error),
        # so the sentence's last unit is read as its last, as after a client's end
        for piece, closes in self.cutter.cut(text):
            if piece.strip() or self.refusing or self.queue.open_sentence() is not None:  # no sentence of spaces
                await self.feed(piece)
            if closes:
                self.close_sentence()

    async def feed(self, text: str) -> None:
        """Source text of the open sentence, or of a new one (refused beyond --max-queued-sentences)."""
        if self.refusing:
            return  # the rest of a refused sentence
        queue = self.queue
        sentence = queue.open_sentence()
        if sentence is None:
            index = queue.next_index()
            waiting = self.conn.settings.max_queued_sentences
            if len(queue.sentences) >= waiting:
                self.refusing = True
                again = "send slower" if self.cutter is not None else "send it again after a done"
                await self.conn.error("busy", f"{len(queue.sentences)} sentences of this session are waiting for "
                                      f"their translation (limit {waiting}); sentence dropped, {again}", index)
                return
            sentence = queue.add(index, self.config)
        if sentence.failed:
            return  # the rest of a dropped sentence
        try:
            sentence.live.feed(text)
        except SentenceTooLongError as exc:
            sentence.failed = True
            await self.conn.error("too_long", f"{exc}; sentence dropped", sentence.index)

    def close_sentence(self) -> bool:
        """The open sentence is complete (the rest of a refused one is over); False if none was open."""
        if self.refusing:
            self.refusing = False
            return True
        sentence = self.queue.open_sentence()
        if sentence is None:
            return False
        sentence.live.end()
        return True

    def end(self) -> None:
        if self.cutter is not None:  # the long-form stream ends, with its open sentence if any
            self.cutter.reset()
            self.close_sentence()
            self.queue.end_stream()
        elif not self.close_sentence():
            raise ProtocolError("no_sentence", "end without a sentence: send source text first")

    def audio_frame(self, data: bytes) -> None:
        raise ProtocolError("binary", BINARY_NEEDS_AUDIO)

    def close(self) -> None:
        pass


BINARY_NEEDS_AUDIO = ("binary frames carry audio: send {\"type\": \"start\", \"input\": \"audio\"} first; text "
                      "sessions take JSON text frames")


class AudioSession:
    """Speech of `config`'s pair as binary PCM frames, transcribed and stepped by an `AudioStream`."""

    def __init__(self, conn, config: SessionConfig, stream: AudioStream):
        self.conn, self.config, self.stream = conn, config, stream

    @classmethod
    async def start(cls, conn, msg: dict) -> AudioSession:
        """A start with input audio: checked, then Whisper loaded (first time) and a stream opened."""
        rate = msg.get("sample_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE or isinstance(rate, bool):
            raise ProtocolError("bad_rate", f"sample_rate must be {SAMPLE_RATE}: send 16-bit little-endian mono "
                                f"PCM at {SAMPLE_RATE} Hz (resample in the client)")
        config = parse_speech_config(msg, conn.settings)
        speech = conn.speech
        if speech is None:
            raise ProtocolError("no_speech", "this server takes no audio")
        try:
            whisper = await speech.whisper()
        except SeqpoError as exc:
            raise ProtocolError("no_speech", str(exc)) from exc
        conn.end_session()  # before counting: a restart replaces this connection's stream
        try:
            speech.acquire()
        except Busy as exc:
            raise ProtocolError("busy", f"{exc}; try again later") from exc
        conn.queue.abandon()  # text sentences too; the cascade cuts the ASR's words into sentences
        return cls(conn, config, AudioStream(conn, config, whisper, speech))

    def ready(self) -> dict:
        return {"type": "ready", **asdict(self.config), "input": "audio", "sample_rate": SAMPLE_RATE,
                "max_audio_seconds": self.conn.settings.max_audio_seconds}

    @property
    def busy(self) -> bool:
        """Audio is being transcribed (or its sentences translated)."""
        return self.stream.busy

    async def source(self, msg: dict) -> None:
        raise ProtocolError("bad_input", "this session takes audio (binary PCM frames), not source text; "
                            "send a start without input audio for text")

    def end(self) -> None:
        if self.stream.ended:
            raise ProtocolError("no_sentence", "the audio has already ended; send a new start")
        self.stream.end()

    def audio_frame(self, data: bytes) -> None:
        stream, settings = self.stream, self.conn.settings
        if stream.ended:
            raise ProtocolError("binary", "the audio has ended; send a new start for more")
        limit = settings.max_audio_frame_bytes
        if len(data) > limit:
            raise ProtocolError("too_large", f"audio frame of {len(data)} bytes; the limit is {limit} "
                                "(send about 0.5 s per frame)")
        if len(data) % 2:
            raise ProtocolError("odd_bytes", f"audio frame of {len(data)} bytes: 16-bit PCM needs an even "
                                "number of bytes")
        seconds = settings.max_audio_seconds
        if not stream.add(pcm16_to_float(data), round(seconds * 16000)):
            if not stream.refused:
                stream.refused = True
                raise ProtocolError("too_long", f"more than {seconds:g} s of audio in this session; further "
                                    "audio is ignored: send end, then a new start")

    def close(self) -> None:
        self.stream.close()
