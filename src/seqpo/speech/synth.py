"""Synthetic English speech for tests and benchmarks: Debian's espeak-ng, resampled to 16 kHz.

`build_speech_set` turns parallel text into the folder `seqpo eval --audio-dir` reads:
`NNNN.wav` (one sentence each), `source.en` (the transcripts) and `reference.<tgt>`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import setting
from ..errors import InputFileError, MissingExtraError, SettingsError
from ..files import load_parallel
from ..languages import parse_pair
from ..prompts import check_supported
from ..resume import read_complete_jsonl, write_atomic
from .audio import SAMPLE_RATE, audio_from_bytes


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise MissingExtraError("speech synthesis needs espeak-ng (Debian: apt-get install espeak-ng)")
    return path


def synthesize(text: str, voice: str = "en-us", wpm: int = 160) -> np.ndarray:
    """`text` spoken by espeak-ng, as 16 kHz float32 samples."""
    if not text.strip():
        raise InputFileError("nothing to synthesize: empty text")
    done = subprocess.run([espeak_binary(), "-v", voice, "-s", str(wpm), "--stdout", text],
                          capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise InputFileError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    return audio_from_bytes(done.stdout, "espeak-ng's output")  # espeak-ng speaks at 22.05 kHz


def write_wav(path: str | Path, samples: np.ndarray) -> None:
    """16-bit 16 kHz mono wav, written to a temporary name and renamed (a kill leaves no half file)."""
    import soundfile  # optional extra (seqpo[speech])

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    soundfile.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    tmp.replace(path)


MANIFEST = "synth.jsonl"  # one line per wav written: its file, text, voice and rate


def build_speech_set(sources: list[str], references: list[str], out: str | Path, target: str,
                     voice: str = "en-us", wpm: int = 160) -> Path:
    """One wav per source line plus the transcripts and references. A wav is kept only if
    OUT/synth.jsonl records it was spoken from the same text with the same voice and rate;
    any other is spoken again, so the audio always says what source.en says."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(sources))))
    made = {r.get("file"): r for r in read_complete_jsonl(out / MANIFEST)}  # the last line of a file wins
    wanted = [{"file": f"{i:0{width}d}.wav", "text": text, "voice": voice, "wpm": wpm} for i, text in enumerate(sources)]
    todo = [w for w in wanted if made.get(w["file"]) != w or not (out / w["file"]).exists()]
    stale = [p for p in out.glob("*.wav") if p.stem.isdigit() and int(p.stem) >= len(sources)]
    if todo or stale:  # until every wav matches again, no transcripts claim that they do
        (out / "source.en").unlink(missing_ok=True)
    for path in stale:  # an earlier, longer set (eval pairs wavs and lines by count)
        path.unlink()
    with (out / MANIFEST).open("a", encoding="utf-8") as fh:
        for w in todo:
            write_wav(out / w["file"], synthesize(w["text"], voice, wpm))
            fh.write(json.dumps(w, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    write_atomic(out / f"reference.{target}", "\n".join(references) + "\n")
    write_atomic(out / "source.en", "\n".join(sources) + "\n")
    return out


@dataclass
class SpeechDataSettings:
    pair: str = setting("en-zh", "language pair (English source); the references are in its target language")
    src: str = setting(None, "English sentences, one per line")
    ref: str = setting(None, "references, aligned with --src")
    out: str = setting(None, "folder for NNNN.wav, source.en and reference.<tgt> (wavs already made from the same "
                       "text, voice and rate are kept)")
    limit: int = setting(None, "only the first N lines")
    voice: str = setting("en-us", "espeak-ng voice")
    wpm: int = setting(160, "speaking rate, words per minute")


def build_speech_data(settings: SpeechDataSettings) -> dict:
    """`seqpo data speech`: synthesize a speech test set for `seqpo eval --audio-dir`."""
    pair = check_supported(parse_pair(settings.pair))
    if pair.source != "en":
        raise SettingsError(f"speech synthesis is English only; got pair {pair}")
    for name in ("src", "ref", "out"):
        if not getattr(settings, name):
            raise InputFileError(f"--{name} is required")
    if settings.wpm < 80 or settings.wpm > 450:
        raise SettingsError("--wpm must be between 80 and 450 (espeak-ng's range)")
    sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    if any(not s.strip() for s in sources):
        raise InputFileError(f"{settings.src} has empty lines; a speech set needs one sentence per line")
    espeak_binary()
    out = build_speech_set(sources, references, settings.out, pair.target, settings.voice, settings.wpm)
    return {"folder": str(out), "files": len(sources)}
