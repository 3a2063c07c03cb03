"""Spoken lines as `seqpo translate --audio` hears them: each file of a `seqpo data speech` folder
through the speech cascade with sentence splitting (the cascade cuts its own sentences, as in
`translate --audio`, the server and `eval --long-form --audio-dir`; `eval --audio-dir` does not
split), its sentences' predictions joined and scored against the line's reference with sacrebleu
(`metrics.quality`: BLEU 13a, chrF), the joined transcripts with WER. Prints one Markdown row per
run; a run is one front end on one code version, so an older version's rows come from running this
script with that version's `src` first on PYTHONPATH (the script only uses the cascade's public
calls). Resumable: one JSONL line per file in OUT/<tag>.jsonl; `--table` prints every run in OUT.

    SEQPO_CACHE=... SEQPO_THREADS=1 PYTHONPATH=src python benchmarks/speech_translate.py \\
        --audio-dir runs/speech-de/audio --tag new-default --out runs/speech-de/translate
    ... --tag new-0.1 --asr-window 0 --asr-vad off
    ... --tag new-trimmed --trim --out runs/speech-de/trimmed   # each file's last word ends its audio
    python benchmarks/speech_translate.py --out runs/speech-de/translate --table

Columns: BLEU/chrF of the joined predictions, WER of the joined transcripts, the sentences the
cascade made, the lines it cut into more sentences than `split_sentences` finds in the spoken
text (a cut mid-clause), and the lines none of whose last 3 words is among the last 6 heard (a
lost tail).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from seqpo.evaluate import read_finished
from seqpo.metrics.quality import corpus_quality
from seqpo.metrics.wer import corpus_wer, wer_words
from seqpo.sentences import split_sentences
from seqpo.speech.asr import streaming_asr
from seqpo.speech.audio import ms_of, read_audio
from seqpo.speech.cascade import SpeechCascade, stream_audio
from seqpo.speech.translate import sentence_rows, speech_parts
from seqpo.translate import TranslateSettings


def run(args) -> None:
    folder = Path(args.audio_dir)
    wavs = sorted(folder.glob("*.wav"))[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{args.tag}.jsonl"
    done = read_finished(log)
    settings = TranslateSettings(pair=args.pair, policy=args.policy, k=args.k, audio=str(wavs[0]),
                                 asr_window=args.asr_window, asr_vad=args.asr_vad, json=True)
    pair, policy, whisper, generator = speech_parts(settings)
    with log.open("a", encoding="utf-8") as fh:
        for i, wav in enumerate(wavs):
            if i in done:
                continue
            samples = read_audio(wav)
            if args.trim:  # the last word ends where the audio does
                samples = samples[: np.flatnonzero(np.abs(samples) > 1e-3)[-1] + 1]
            asr = streaming_asr(whisper, settings, pair.source)
            cascade = SpeechCascade(asr, pair, policy, generator, settings.chunk,
                                    **sentence_rows(settings, pair, generator))
            episodes = stream_audio(samples, cascade, settings.audio_chunk)
            record = {"index": i, "audio": wav.name, "audio_ms": ms_of(len(samples)),
                      "sentences": [e.source for e in episodes], "predictions": [e.prediction for e in episodes],
                      "settings": {"policy": args.policy, "k": args.k, "asr_window": args.asr_window,
                                   "asr_vad": args.asr_vad, "audio_chunk": settings.audio_chunk, "trim": args.trim}}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            print(f"{args.tag} {i}: {' | '.join(record['sentences'])}", flush=True)


def table(out: Path, audio_dir: Path, pair: str, tags: list[str] | None) -> None:
    """One row per run in OUT (or per tag), over the files every such run has finished (so the rows compare)."""
    sources = (audio_dir / f"source.{pair.split('-')[0]}").read_text(encoding="utf-8").splitlines()
    references = (audio_dir / f"reference.{pair.split('-')[1]}").read_text(encoding="utf-8").splitlines()
    runs = {log.stem: read_finished(log) for log in sorted(out.glob("*.jsonl")) if not tags or log.stem in tags}
    common = sorted(set.intersection(*(set(done) for done in runs.values())))
    spoken = [len(split_sentences(sources[i], "word")) for i in common]
    print(f"{len(common)} spoken lines ({sum(spoken)} sentences)\n")
    print("| front end (code, settings) | BLEU | chrF | WER % | system sentences | lines cut into more sentences "
          "than spoken | lines whose last 3 words are lost |")
    print("|---|---|---|---|---|---|---|")
    for tag, done in runs.items():
        records = [done[i] for i in common]
        hyps = [" ".join(p for p in r["predictions"] if p) for r in records]
        heard = [" ".join(r["sentences"]) for r in records]
        quality = corpus_quality(hyps, [references[i] for i in common], pair.split("-")[1])
        extra = sum(len(r["sentences"]) > n for r, n in zip(records, spoken))
        lost = sum(not tail_heard(h, sources[i]) for h, i in zip(heard, common))
        s = records[0]["settings"]
        print(f"| {tag} (--asr-window {s['asr_window']:g} --asr-vad {s['asr_vad']}, {s['policy']}"
              f"{', trailing silence cut' if s.get('trim') else ''}) "
              f"| {quality['BLEU']:.2f} | {quality['chrF']:.2f} | {corpus_wer(heard, [sources[i] for i in common]):.2f} "
              f"| {sum(len(r['sentences']) for r in records)} | {extra} | {lost} |")


def tail_heard(heard: str, spoken: str) -> bool:
    """At least one of the spoken line's last 3 words is among the last 6 heard (a lost tail has none)."""
    said, got = wer_words(spoken)[-3:], set(wer_words(heard)[-6:])
    return any(w in got for w in said)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio-dir", default="runs/speech-de/audio", help="a `seqpo data speech` folder")
    ap.add_argument("--out", default="runs/speech-de/translate")
    ap.add_argument("--tag", help="this run's name (its row in the table)")
    ap.add_argument("--pair", default="en-de")
    ap.add_argument("--policy", default="llm")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--asr-window", type=float, default=TranslateSettings.asr_window)
    ap.add_argument("--asr-vad", default=TranslateSettings.asr_vad, choices=["silero", "off"])
    ap.add_argument("--trim", action="store_true", help="cut each file's trailing silence (its last word ends the audio)")
    ap.add_argument("--table", action="store_true", help="print the table of the runs in OUT")
    ap.add_argument("--tags", help="--table: only these runs (comma-separated)")
    args = ap.parse_args()
    if args.table:
        table(Path(args.out), Path(args.audio_dir), args.pair, args.tags.split(",") if args.tags else None)
    else:
        run(args)


if __name__ == "__main__":
    main()
