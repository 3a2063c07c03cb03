"""Speech cascade on synthetic speech (MISSION.md sec. 4): prints two Markdown tables.

1. ASR: WER of the streaming front end (local agreement, --audio-chunk) vs offline Whisper tiny.en
   on the same audio, how long after a word ends it is emitted, and the ASR real-time factor.
2. End to end: BLEU/chrF and speech latency (ms of audio) of `seqpo eval --audio-dir` per policy.

The first N lines of the dev split (last 200 lines of generaltest2023 en-zh) are spoken by
espeak-ng into OUT/audio; every eval is resumable (OUT/<policy>), so a re-run only adds what is
missing. E.g.
    SEQPO_THREADS=1 PYTHONPATH=src python benchmarks/speech.py --limit 50 --out runs/speech
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqpo.evaluate import EvalSettings, evaluate, read_finished
from seqpo.files import load_parallel
from seqpo.metrics.wer import corpus_wer
from seqpo.speech.asr import load_whisper, transcribe_offline
from seqpo.speech.audio import read_audio
from seqpo.speech.synth import build_speech_set

DEV = Path(__file__).resolve().parents[1] / "runs" / "dev" / "dev200.en-zh"


def offline_transcripts(wavs: list[Path], cache: Path) -> tuple[list[str], float]:
    """Whole-file Whisper transcripts (cached in OUT) and the decoding seconds they took."""
    if cache.exists():
        data = json.loads(cache.read_text())
        return data["transcripts"], data["seconds"]
    model = load_whisper()
    started = time.perf_counter()
    transcripts = [transcribe_offline(model, read_audio(w)) for w in wavs]
    seconds = time.perf_counter() - started
    cache.write_text(json.dumps({"transcripts": transcripts, "seconds": seconds}, ensure_ascii=False))
    return transcripts, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--out", default="runs/speech")
    ap.add_argument("--src", default=f"{DEV}.en")
    ap.add_argument("--ref", default=f"{DEV}.zh")
    ap.add_argument("--pair", default="en-zh")
    ap.add_argument("--policies", default="llm,wait-k:3", help="comma-separated; wait-k:K sets k")
    ap.add_argument("--audio-chunk", type=float, default=0.5)
    args = ap.parse_args()

    out = Path(args.out)
    sources, references = load_parallel(args.src, args.ref, args.limit)
    audio = build_speech_set(sources, references, out / "audio", args.pair.split("-")[1])
    wavs = sorted(audio.glob("*.wav"))
    audio_s = sum(len(read_audio(w)) for w in wavs) / 16000

    rows = []
    for spec in args.policies.split(","):
        name, _, k = spec.partition(":")
        folder = out / f"{name}{k}"
        settings = EvalSettings(pair=args.pair, policy=name, k=int(k or 3), audio_dir=str(audio),
                                audio_chunk=args.audio_chunk, out=str(folder), limit=args.limit)
        rows.append((spec, evaluate(settings, progress=True), folder))

    records = list(read_finished(rows[0][2] / "instances.jsonl").values())
    records.sort(key=lambda r: r["index"])
    streamed = [r["source"] for r in records]
    offline, offline_s = offline_transcripts(wavs, out / "offline_asr.json")
    lags = [w["known_ms"] - w["end_ms"] for r in records for w in r["asr_words"]]
    print(f"ASR on {len(wavs)} espeak-ng sentences ({audio_s:.0f} s of audio, "
          f"{statistics.fmean(len(s.split()) for s in sources):.1f} words each)\n")
    print("| ASR | WER % | word emitted after its end (ms, mean / median) | decode s per audio s |")
    print("|---|---|---|---|")
    print(f"| offline Whisper tiny.en (whole file) | {corpus_wer(offline, sources):.2f} | - | "
          f"{offline_s / audio_s:.2f} |")
    asr_s = sum(r["asr_ms"] for r in records) / 1000
    print(f"| streaming, local agreement, {args.audio_chunk} s chunks | {corpus_wer(streamed, sources):.2f} | "
          f"{statistics.fmean(lags):.0f} / {statistics.median(lags):.0f} | {asr_s / audio_s:.2f} |")
    print()
    print("| policy | lines | BLEU | chrF | WER % | StartOffset | EndOffset | AL | LAAL | AL (CA) | LAAL (CA) | wait frac. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec, s, _ in rows:
        print(f"| {spec} | {s['sentences']} | {s['BLEU']:.2f} | {s['chrF']:.2f} | {s['WER']:.2f} | "
              + " | ".join(f"{s[k]:.0f}" for k in ("StartOffset", "EndOffset", "AL", "LAAL", "AL_CA", "LAAL_CA"))
              + f" | {s['wait_fraction']:.2f} |")
    decodes = sum(r["asr_decodes"] for r in records)
    print(f"\n({decodes} streaming decodes; wall seconds per sentence: "
          + ", ".join(f"{spec} {s['wall_seconds_per_sentence']}" for spec, s, _ in rows) + ")")


if __name__ == "__main__":
    main()
