"""Speech cascade on synthetic speech, latency in ms of audio as speech SiMT reports it (e.g. EASiST,
Fu et al., 2025, arXiv 2504.11809): prints two Markdown tables.

1. ASR: WER of the streaming front end vs offline Whisper tiny.en on the same audio, how long
   after a word ends it is emitted, decodes per second of audio, and the real-time factor (decode
   seconds per audio second: wall clock, and CPU time of the process, which on a loaded machine is
   what a quiet one would take as wall clock). The streaming ASR runs alone here, no translation.
2. End to end: BLEU/chrF and speech latency (ms of audio; _CA adds the computation) of
   `seqpo eval --audio-dir` per policy and ASR setting.

With --baseline both tables also have seqpo 0.1.0's ASR (--asr-window 0 --asr-vad off: a 30 s encoder
window and a decode after every chunk) beside the default, from the same run. The first N lines of
the dev split (last 200 lines of generaltest2023 en-zh) are spoken by espeak-ng into OUT/audio;
everything is resumable (OUT/asr-<setting>.jsonl, OUT/offline_asr.jsonl, OUT/<policy>-<setting>), so a re-run only adds
what is missing. E.g.
    SEQPO_THREADS=1 PYTHONPATH=src python benchmarks/speech.py --limit 50 --e2e-limit 10 \\
        --policies wait-k:3 --baseline --out runs/speech
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from seqpo.evaluate import EvalSettings, evaluate, read_finished
from seqpo.files import load_parallel
from seqpo.metrics.wer import corpus_wer
from seqpo.speech.asr import load_whisper, streaming_asr, transcribe_offline
from seqpo.speech.audio import audio_chunks, ms_of, read_audio
from seqpo.speech.synth import build_speech_set

DEV = Path(__file__).resolve().parents[1] / "runs" / "dev" / "dev200.en-zh"


def offline_transcripts(model, wavs: list[Path], cache: Path) -> tuple[list[str], float, float]:
    """Whole-file Whisper transcripts and the decoding seconds they took (wall, CPU); per file in
    OUT/offline_asr.jsonl, so a shorter --limit reuses them."""
    done = read_finished(cache)
    with cache.open("a", encoding="utf-8") as out:
        for i, wav in enumerate(wavs):
            if i not in done:
                samples = read_audio(wav)
                started, cpu = time.perf_counter(), time.process_time()
                text = transcribe_offline(model, samples)
                done[i] = {"index": i, "transcript": text, "seconds": time.perf_counter() - started,
                           "cpu_seconds": time.process_time() - cpu}
                out.write(json.dumps(done[i], ensure_ascii=False) + "\n")
                out.flush()
    records = [done[i] for i in range(len(wavs))]
    return ([r["transcript"] for r in records], sum(r["seconds"] for r in records),
            sum(r["cpu_seconds"] for r in records))


def streaming_pass(model, wavs: list[Path], asr_settings: SimpleNamespace, chunk_s: float, log: Path,
                   todo=None) -> list[dict]:
    """Each file (of `todo`: default all) through the streaming ASR alone, in `chunk_s` pieces; one
    JSONL record per file."""
    done = read_finished(log)
    with log.open("a", encoding="utf-8") as out:
        for i in range(len(wavs)) if todo is None else todo:
            if i in done:
                continue
            samples = read_audio(wavs[i])
            asr = streaming_asr(model, asr_settings)
            for piece in audio_chunks(samples, chunk_s):
                asr.insert(piece)
            asr.finish()
            done[i] = {"index": i, "transcript": asr.transcript, "audio_ms": ms_of(len(samples)),
                       "asr_ms": asr.compute_ms, "asr_cpu_ms": asr.cpu_ms, "decodes": asr.decodes,
                       "emit_lag_ms": [w.known_ms - w.end_ms for w in asr.words]}
            out.write(json.dumps(done[i], ensure_ascii=False) + "\n")
            out.flush()
    return [done[i] for i in (range(len(wavs)) if todo is None else todo)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50, help="sentences of the ASR table")
    ap.add_argument("--e2e-limit", type=int, default=None, help="sentences of the end-to-end table (default: --limit; 0: the ASR table only)")
    ap.add_argument("--out", default="runs/speech")
    ap.add_argument("--src", default=f"{DEV}.en")
    ap.add_argument("--ref", default=f"{DEV}.zh")
    ap.add_argument("--pair", default="en-zh")
    ap.add_argument("--policies", default="llm,wait-k:3", help="comma-separated; wait-k:K sets k")
    ap.add_argument("--audio-chunk", type=float, default=0.5)
    ap.add_argument("--asr-window", type=float, default=EvalSettings.asr_window)
    ap.add_argument("--asr-vad", default=EvalSettings.asr_vad, choices=["silero", "off"])
    ap.add_argument("--baseline", action="store_true",
                    help="also seqpo 0.1.0's ASR (--asr-window 0 --asr-vad off), side by side")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources, references = load_parallel(args.src, args.ref, args.limit)
    audio = build_speech_set(sources, references, out / "audio", args.pair.split("-")[1])
    wavs = sorted(audio.glob("*.wav"))[: args.limit]
    audio_s = sum(len(read_audio(w)) for w in wavs) / 16000
    setups = [("default", SimpleNamespace(asr_window=args.asr_window, asr_vad=args.asr_vad))]
    if args.baseline:
        setups.append(("0.1", SimpleNamespace(asr_window=0.0, asr_vad="off")))
    for _, s in setups:
        s.max_buffer, s.asr_beam = EvalSettings.max_buffer, EvalSettings.asr_beam

    model = load_whisper()
    streamed = {}
    for tag, s in setups:
        log = out / f"asr-{tag}-w{s.asr_window:g}-{s.asr_vad}-c{args.audio_chunk:g}.jsonl"
        streamed[tag] = streaming_pass(model, wavs, s, args.audio_chunk, log)
    offline, offline_s, offline_cpu_s = offline_transcripts(model, wavs, out / "offline_asr.jsonl")

    e2e_limit = args.limit if args.e2e_limit is None else args.e2e_limit  # 0: the ASR table only
    rows = []
    for tag, s in setups if e2e_limit else []:
        for spec in args.policies.split(","):
            name, _, k = spec.partition(":")
            settings = EvalSettings(pair=args.pair, policy=name, k=int(k or 3), audio_dir=str(audio),
                                    audio_chunk=args.audio_chunk, asr_window=s.asr_window, asr_vad=s.asr_vad,
                                    out=str(out / f"{name}{k}-{tag}"), limit=e2e_limit)
            scores = evaluate(settings, progress=True)
            records = read_finished(Path(settings.out) / "instances.jsonl").values()
            scores["asr_rtf"] = sum(r["asr_ms"] for r in records) / max(1.0, sum(r["source_length"] for r in records))
            rows.append((tag, spec, scores))

    print(f"ASR on {len(wavs)} espeak-ng sentences ({audio_s:.0f} s of audio, "
          f"{statistics.fmean(len(s.split()) for s in sources):.1f} words each); machine load while measured "
          "inflates wall clock, not CPU time\n")
    print("| ASR | WER % | word emitted after its end (ms, mean / median) | decodes per audio s "
          "| RTF (wall) | RTF (CPU) |")
    print("|---|---|---|---|---|---|")
    print(f"| offline Whisper tiny.en (whole file) | {corpus_wer(offline, sources):.2f} | - | - | "
          f"{offline_s / audio_s:.3f} | {offline_cpu_s / audio_s:.3f} |")
    for tag, s in setups:
        records = streamed[tag]
        lags = [x for r in records for x in r["emit_lag_ms"]]
        print(f"| streaming {tag} (--asr-window {s.asr_window:g} --asr-vad {s.asr_vad}, {args.audio_chunk:g} s chunks) "
              f"| {corpus_wer([r['transcript'] for r in records], sources):.2f} "
              f"| {statistics.fmean(lags):.0f} / {statistics.median(lags):.0f} "
              f"| {sum(r['decodes'] for r in records) / audio_s:.2f} "
              f"| {sum(r['asr_ms'] for r in records) / 1000 / audio_s:.3f} "
              f"| {sum(r['asr_cpu_ms'] for r in records) / 1000 / audio_s:.3f} |")
    if not rows:
        return
    print(f"\nEnd to end (`seqpo eval --audio-dir`, bundled model) on the first {e2e_limit} sentences; "
          "latency in ms of audio, _CA with the computation (ASR + translation)\n")
    print("| ASR | policy | lines | BLEU | chrF | WER % | StartOffset | AL | LAAL | StartOffset (CA) | AL (CA) "
          "| LAAL (CA) | ASR RTF (wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tag, spec, s in rows:
        print(f"| {tag} | {spec} | {s['sentences']} | {s['BLEU']:.2f} | {s['chrF']:.2f} | {s['WER']:.2f} | "
              + " | ".join(f"{s[k]:.0f}" for k in ("StartOffset", "AL", "LAAL", "StartOffset_CA", "AL_CA", "LAAL_CA"))
              + f" | {s['asr_rtf']:.3f} |")
    print("\n(wall seconds per sentence of this run, None when all was resumed: "
          + ", ".join(f"{tag} {spec} {s['wall_seconds_per_sentence']}" for tag, spec, s in rows) + ")")


if __name__ == "__main__":
    main()
