"""Reading speech input: 16 kHz audio (what Whisper takes), cut into the chunks a live
microphone would deliver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MissingExtraError

SAMPLE_RATE = 16000  # Whisper's feature extractor works at 16 kHz only


class AudioTooLongError(InputFileError):
    """The audio holds more samples than allowed (found before decoding past the limit)."""


def ms_of(samples: int) -> float:
    return samples * 1000.0 / SAMPLE_RATE


def read_wav(path: str | Path) -> np.ndarray:
    """A 16 kHz wav file as float32 samples in [-1, 1] (channels averaged).

    Other rates are refused rather than resampled, so the audio timeline of the latency
    metrics is the file's own."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"audio file not found: {p}")
    return _read_audio(str(p), str(p))


def wav_from_bytes(data: bytes, name: str = "upload", max_seconds: float | None = None) -> np.ndarray:
    """`read_wav` of a file's bytes (an upload to the server); `name` names it in errors. With
    `max_seconds`, longer audio raises `AudioTooLongError` without being decoded past the limit
    (a few hundred kB of FLAC silence decode to hours of samples)."""
    import io

    return _read_audio(io.BytesIO(data), name, None if max_seconds is None else round(max_seconds * SAMPLE_RATE))


def _read_audio(source, name: str, max_samples: int | None = None) -> np.ndarray:
    try:
        import soundfile
    except ImportError as exc:
        raise MissingExtraError("speech input needs the speech extra: pip install 'seqpo[speech]'") from exc
    too_long = AudioTooLongError(f"{name} holds more than {(max_samples or 0) / SAMPLE_RATE:g} s of audio")
    try:
        with soundfile.SoundFile(source) as f:
            if f.samplerate != SAMPLE_RATE:
                raise InputFileError(f"{name} is sampled at {f.samplerate} Hz; speech input must be {SAMPLE_RATE} "
                                     f"Hz (convert with: sox IN.wav -r {SAMPLE_RATE} -c 1 OUT.wav)")
            if max_samples is not None and f.frames > max_samples:  # as the header says
                raise too_long
            samples = f.read(-1 if max_samples is None else max_samples + 1, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:  # libsndfile's error for a bad file
        raise InputFileError(f"cannot read audio file {name}: {str(exc).splitlines()[0]}") from exc
    if max_samples is not None and len(samples) > max_samples:  # a header that understates its length
        raise too_long
    if len(samples) == 0:
        raise InputFileError(f"audio file {name} holds no samples")
    return samples.mean(axis=1).astype(np.float32)


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
