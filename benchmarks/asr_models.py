"""Whisper tiny.en vs base (`--asr`) on espeak-ng speech, side by side in one run: WER (CER for
Chinese and Japanese) and the real-time factor (CPU seconds of the process per second of audio;
wall clock beside it), for the streaming front end as `seqpo eval --audio-dir` runs it (default
`SpeechSettings`) and for Whisper on the whole file. Prints one Markdown table.

Sets: `en` speaks the first --limit lines of the en-de dev split (the last 200 lines of
generaltest2022.en-de.en) with espeak-ng's English voice, heard by both models; `de` the de-en dev
split's German side (generaltest2022.de-en.de) with `-v de`, and `zh` (generaltest2022.zh-en.zh,
`-v cmn`) only where this espeak-ng speaks Mandarin characters (`synth.check_voice`), heard by base
only (tiny.en hears English only). Every file is heard by each model in turn before the next file,
so the machine's load falls on both alike. Resumable: OUT/<set>/<model>-<streaming|offline>.jsonl
(one line per file) and OUT/<set>/audio (the wavs). E.g.
    SEQPO_THREADS=1 SEQPO_CACHE=... PYTHONPATH=src python benchmarks/asr_models.py --limit 30 --out runs/asr-models
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seqpo.bundled import ASR_ENGLISH, ASR_MODELS
from seqpo.config import SpeechSettings
from seqpo.errors import SettingsError
from seqpo.evaluate import read_finished
from seqpo.languages import unit_of
from seqpo.metrics.wer import corpus_wer
from seqpo.speech.asr import load_whisper, streaming_asr, transcribe_offline
from seqpo.speech.audio import audio_chunks, ms_of, read_audio
from seqpo.speech.synth import VOICES, build_speech_set, check_voice

ROOT = Path(__file__).resolve().parents[1]
WMT = ROOT.parent / "shared" / "data" / "wmt"  # the WMT releases where this checkout has them (docs/data.md)
SETS = {"en": ("en-de", "generaltest2022.en-de.en"), "de": ("de-en", "generaltest2022.de-en.de"),
        "zh": ("zh-en", "generaltest2022.zh-en.zh")}


def dev_lines(path: Path, limit: int) -> list[str]:
    """The first `limit` lines of the dev split (the file's last 200 lines)."""
    return path.read_text(encoding="utf-8").splitlines()[-200:][:limit]


def hear(model, samples, language: str, streaming: bool) -> dict:
    """One file heard by one model: its transcript and the seconds it took (wall, CPU)."""
    started, cpu = time.perf_counter(), time.process_time()
    if streaming:
        asr = streaming_asr(model, SpeechSettings(), language)
        for piece in audio_chunks(samples, SpeechSettings.audio_chunk):
            asr.insert(piece)
        asr.finish()
        text = asr.transcript
    else:
        text = transcribe_offline(model, samples, language=language)
    return {"transcript": text, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


def run_set(lang: str, lines: list[str], models: dict, out: Path) -> list[tuple]:
    target = SETS[lang][0].split("-")[1]  # the folder's reference.<tgt> (unused here) holds the transcripts
    audio = build_speech_set(lines, lines, out / "audio", target, source=lang)
    wavs = sorted(audio.glob("*.wav"))[: len(lines)]
    names = [n for n in models if lang == "en" or n != ASR_ENGLISH]
    logs = {(n, mode): out / f"{n}-{mode}.jsonl" for n in names for mode in ("streaming", "offline")}
    done = {key: read_finished(path) for key, path in logs.items()}
    for i, wav in enumerate(wavs):
        samples = read_audio(wav)
        for (name, mode), path in logs.items():
            if i not in done[(name, mode)]:
                record = {"index": i, "audio_s": ms_of(len(samples)) / 1000,
                          **hear(models[name], samples, lang, mode == "streaming")}
                done[(name, mode)][i] = record
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{lang} {i + 1}/{len(wavs)}", flush=True)
    rows = []
    for name in names:
        row = [lang, len(wavs), name]
        for mode in ("streaming", "offline"):
            records = [done[(name, mode)][i] for i in range(len(wavs))]
            audio_s = sum(r["audio_s"] for r in records)
            row += [corpus_wer([r["transcript"] for r in records], lines, unit_of(lang)),
                    sum(r["cpu_seconds"] for r in records) / audio_s, sum(r["seconds"] for r in records) / audio_s]
        rows.append((*row, audio_s))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=30, help="sentences per language")
    ap.add_argument("--sets", default="en,de,zh", help="comma-separated: en, de, zh")
    ap.add_argument("--wmt", default=str(WMT), help="folder with the generaltest2022 files")
    ap.add_argument("--out", default="runs/asr-models")
    args = ap.parse_args()

    models = {name: load_whisper(name=name) for name in ASR_MODELS}
    rows = []
    for lang in args.sets.split(","):
        try:
            check_voice(lang, VOICES[lang])
        except SettingsError as exc:
            print(f"{lang}: skipped: {exc}")
            continue
        rows += run_set(lang, dev_lines(Path(args.wmt) / SETS[lang][1], args.limit), models, Path(args.out) / lang)

    print("\n| speech | lines (audio s) | --asr | streaming WER % | streaming RTF CPU (wall) "
          "| whole-file WER % | whole-file RTF CPU (wall) |")
    print("|---|---|---|---|---|---|---|")
    for lang, n, name, s_wer, s_cpu, s_wall, o_wer, o_cpu, o_wall, audio_s in rows:
        cer = " (CER)" if unit_of(lang) == "char" else ""
        print(f"| {lang} (espeak-ng -v {VOICES[lang]}) | {n} ({audio_s:.0f}) | {name} | {s_wer:.1f}{cer} "
              f"| {s_cpu:.3f} ({s_wall:.3f}) | {o_wer:.1f} | {o_cpu:.3f} ({o_wall:.3f}) |")


if __name__ == "__main__":
    main()
