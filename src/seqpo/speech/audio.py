"""Reading speech input: any audio file (wav, flac, mp3, m4a, ogg, ... at any rate, any channels)
decoded and resampled to 16 kHz mono (what Whisper takes) by PyAV, cut into the chunks a live
microphone would deliver."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MissingExtraError

SAMPLE_RATE = 16000  # Whisper's feature extractor works at 16 kHz only
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")  # what `--audio-dir` picks up


class AudioTooLongError(InputFileError):
    """The audio holds more samples than allowed (found before decoding past the limit)."""


def ms_of(samples: int) -> float:
    return samples * 1000.0 / SAMPLE_RATE


def read_audio(path: str | Path) -> np.ndarray:
    """An audio file as 16 kHz mono float32 samples in [-1, 1] (channels mixed down)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"audio file not found: {p}")
    return decode_audio(str(p), str(p))


def audio_from_bytes(data: bytes, name: str = "upload", max_seconds: float | None = None) -> np.ndarray:
    """`read_audio` of a file's bytes (an upload to the server); `name` names it in errors. With
    `max_seconds`, longer audio raises `AudioTooLongError` without being decoded past the limit
    (a few hundred kB of FLAC silence decode to hours of samples)."""
    return decode_audio(io.BytesIO(data), name, None if max_seconds is None else round(max_seconds * SAMPLE_RATE))


def pyav():
    """PyAV, which decodes and resamples every audio input."""
    try:
        import av  # optional extra (seqpo[speech]: PyAV comes with faster-whisper)
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install -e '.[speech]' in the seqpo "
                                "clone") from exc
    return av


def decode_audio(source, name: str, max_samples: int | None = None) -> np.ndarray:
    """A path or binary file object of any format FFmpeg reads, as 16 kHz mono float32; the first
    audio stream only. Past `max_samples` (16 kHz) it stops decoding and raises `AudioTooLongError`."""
    av = pyav()
    too_long = AudioTooLongError(f"{name} holds more than {(max_samples or 0) / SAMPLE_RATE:g} s of audio")
    pieces, n = [], 0
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InputFileError(f"cannot read audio file {name}: it holds no audio stream")
            stream = container.streams.audio[0]
            seconds = _header_seconds(stream)
            if max_samples is not None and seconds is not None and seconds * SAMPLE_RATE > max_samples:
                raise too_long  # as the header says
            # planar float, channels kept and averaged here: FFmpeg's own stereo-to-mono mix weights
            # each channel 1/sqrt(2), which lifts identical channels 3 dB and a loud file past 1.0
            resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)

            def keep(frame) -> int:  # resample a decoded frame (None: flush), keep it mono; its length
                mono = [out.to_ndarray().mean(axis=0) for out in resampler.resample(frame)]
                pieces.extend(mono)
                return sum(len(m) for m in mono)

            for frame in container.decode(stream):
                n += keep(frame)
                if max_samples is not None and n > max_samples:  # a header that understates its length
                    raise too_long
            n += keep(None)  # what the resampler still holds
    except (av.error.FFmpegError, ValueError) as exc:  # not audio, a broken frame, a format change mid-stream
        why = getattr(exc, "strerror", None) or str(exc).splitlines()[0]  # FFmpeg's, without the '<none>' name
        raise InputFileError(f"cannot read audio file {name}: {why}") from exc
    if max_samples is not None and n > max_samples:
        raise too_long
    if n == 0:
        raise InputFileError(f"audio file {name} holds no samples")
    return np.concatenate(pieces).astype(np.float32, copy=False)


def _header_seconds(stream) -> float | None:
    """The stream's length as its container states it (None when it does not)."""
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


class StreamResampler:
    """Samples at `rate` (mono, or (samples, channels) mixed down by averaging as `decode_audio`
    does) arriving in pieces, out as 16 kHz mono float32: the resampler's filter state carries over
    from piece to piece, as when a whole file is decoded. 16 kHz input passes through unchanged."""

    def __init__(self, rate: int):
        if rate <= 0:
            raise InputFileError(f"audio sample rate must be positive, got {rate}")
        self.rate = rate
        self.resampler = None
        if rate != SAMPLE_RATE:
            self.av = pyav()
            self.resampler = self.av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)

    def __call__(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """The 16 kHz samples of the next piece; `last` also flushes what the filter still holds."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        if self.resampler is None:
            return samples
        frames = []
        if len(samples):
            frame = self.av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, :]), format="fltp",
                                                    layout="mono")
            frame.sample_rate = self.rate
            frames += self.resampler.resample(frame)
        if last:
            frames += self.resampler.resample(None)
        pieces = [f.to_ndarray()[0] for f in frames]
        return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, dtype=np.float32)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM (what the web page sends) as float32 samples."""
    if len(data) % 2:
        raise ValueError("16-bit PCM needs an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def audio_chunks(samples: np.ndarray, chunk_s: float) -> Iterator[np.ndarray]:
    """Consecutive pieces of `chunk_s` seconds (the last may be shorter), as a microphone sends them."""
    if chunk_s <= 0:
        raise ValueError("the audio chunk must be positive")
    size = max(1, round(chunk_s * SAMPLE_RATE))
    for i in range(0, len(samples), size):
        yield samples[i : i + size]
