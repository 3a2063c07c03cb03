"""Synthetic speech for tests and benchmarks: Debian's espeak-ng, resampled to 16 kHz, in the
pair's source language (`VOICES`).

`build_speech_set` turns parallel text into the folder `seqpo eval --audio-dir` reads:
`NNNN.wav` (one sentence each), `source.<src>` (the transcripts) and `reference.<tgt>`.
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
from ..languages import LANGUAGE_NAMES, parse_pair
from ..prompts import check_supported
from ..resume import read_complete_jsonl, write_atomic
from .audio import SAMPLE_RATE, audio_from_bytes


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise MissingExtraError("speech synthesis needs espeak-ng (Debian: apt-get install espeak-ng)")
    return path


# espeak-ng's voice for each source language, and a sentence it must speak in that language (not
# spell out in English): Debian's espeak-ng reads Mandarin characters only when built with the
# extended cmn dictionary, and Japanese kanji never (it says "Chinese letter"); `check_voice` tells.
VOICES = {"en": "en-us", "de": "de", "zh": "cmn", "ja": "ja"}
PROBES = {"de": "Ich möchte eine Tasse Tee.", "zh": "我想喝一杯茶。", "ja": "お茶を一杯ください。"}


def check_voice(language: str, voice: str) -> None:
    """espeak-ng speaks `language` with `voice`: its phonemes of the language's probe sentence
    never switch to English (`(en)`), as they do for words missing from its dictionary."""
    probe = PROBES.get(language)
    if probe is None:
        return
    done = subprocess.run([espeak_binary(), "-v", voice, "-q", "-x", probe], capture_output=True, check=False)
    phonemes = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "(en)" in phonemes:
        raise SettingsError(f"espeak-ng's voice {voice!r} cannot speak this {LANGUAGE_NAMES[language]} sentence "
                            f"(it spells {probe!r} out in English; this build lacks the words)")


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
                     voice: str | None = None, wpm: int = 160, source: str = "en") -> Path:
    """One wav per source line (in the `source` language, by its voice unless `voice` names
    another) plus the transcripts and references. A wav is kept only if OUT/synth.jsonl records it
    was spoken from the same text with the same voice and rate; any other is spoken again, so the
    audio always says what source.<src> says."""
    voice = voice or VOICES[source]
    out = Path(out)
    transcripts = out / f"source.{source}"
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(sources))))
    made = {r.get("file"): r for r in read_complete_jsonl(out / MANIFEST)}  # the last line of a file wins
    wanted = [{"file": f"{i:0{width}d}.wav", "text": text, "voice": voice, "wpm": wpm} for i, text in enumerate(sources)]
    todo = [w for w in wanted if made.get(w["file"]) != w or not (out / w["file"]).exists()]
    stale = [p for p in out.glob("*.wav") if p.stem.isdigit() and int(p.stem) >= len(sources)]
    if todo or stale:  # until every wav matches again, no transcripts claim that they do
        transcripts.unlink(missing_ok=True)
    for path in stale:  # an earlier, longer set (eval pairs wavs and lines by count)
        path.unlink()
    with (out / MANIFEST).open("a", encoding="utf-8") as fh:
        for w in todo:
            write_wav(out / w["file"], synthesize(w["text"], voice, wpm))
            fh.write(json.dumps(w, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    write_atomic(out / f"reference.{target}", "\n".join(references) + "\n")
    write_atomic(transcripts, "\n".join(sources) + "\n")
    return out


@dataclass
class SpeechDataSettings:
    pair: str = setting("en-zh", "language pair; the audio speaks its source language, the references are in its "
                        "target language")
    src: str = setting(None, "source sentences, one per line")
    ref: str = setting(None, "references, aligned with --src")
    out: str = setting(None, "folder for NNNN.wav, source.<src> and reference.<tgt> (wavs already made from the same "
                       "text, voice and rate are kept)")
    limit: int = setting(None, "only the first N lines")
    voice: str = setting(None, "espeak-ng voice (default: the source language's: " +
                         ", ".join(f"{k} {v}" for k, v in VOICES.items()) + ")")
    wpm: int = setting(160, "speaking rate, words per minute")


def build_speech_data(settings: SpeechDataSettings) -> dict:
    """`seqpo data speech`: synthesize a speech test set for `seqpo eval --audio-dir`."""
    pair = check_supported(parse_pair(settings.pair))
    for name in ("src", "ref", "out"):
        if not getattr(settings, name):
            raise InputFileError(f"--{name} is required")
    if settings.wpm < 80 or settings.wpm > 450:
        raise SettingsError("--wpm must be between 80 and 450 (espeak-ng's range)")
    sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    if any(not s.strip() for s in sources):
        raise InputFileError(f"{settings.src} has empty lines; a speech set needs one sentence per line")
    voice = settings.voice or VOICES[pair.source]
    check_voice(pair.source, voice)
    out = build_speech_set(sources, references, settings.out, pair.target, voice, settings.wpm, pair.source)
    return {"folder": str(out), "files": len(sources)}
