"""Behaviour check for refactors: every evaluation path, every policy and decoding mode, on a few
dev lines, reduced to one digest per run.

    python benchmarks/identical_outputs.py OUT                 # run, write OUT/digest.json
    python benchmarks/identical_outputs.py OUT --compare REF   # ... and compare with REF/digest.json
    python benchmarks/identical_outputs.py OUT --model DIR     # any model folder (e.g. a tiny random one: fast)

The paths: `seqpo eval` on sentences (offline / wait-k / llm in every decoding mode, plus look-ahead
and write-ahead), on long-form streams (`--long-form`), on spoken sentences (`--audio-dir`) and on
spoken streams (`--long-form --audio-dir`), and SimulEval's own `simuleval` command running seqpo's
text and speech agents. A digest holds each instance's prediction and delays, so two digests are
equal exactly when the outputs (text and timing in source units or ms of audio) are identical.
Elapsed times are left out: they are wall-clock. A run the code refuses (a mode a path does not
take) is recorded as refused, with the error's last line; a run refused in REF and run now is
reported as new, not as a difference. Every run uses one thread (`SEQPO_THREADS=1`, unless set):
matrix products on another thread count may round differently. Runs are resumable (`seqpo eval
--out`), so a re-run only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PAIR, SRC, TGT = "en-zh", "en", "zh"
DEV = "wmt/generaltest2023.en-zh"  # the en-zh dev split is the last 200 lines of this test set
MODES = ("reencode", "cached", "append", "slots")

# (path, policy, mode, extra flags)
RUNS = [("sentences", policy, mode, []) for policy in ("offline", "wait-k", "llm") for mode in MODES]
RUNS += [("sentences", "llm", mode, ["--lookahead", "4", "--write-ahead"]) for mode in ("append", "slots")]
RUNS += [("long-form", policy, mode, []) for policy in ("wait-k", "llm") for mode in MODES]
RUNS += [("speech", policy, mode, []) for policy in ("wait-k", "llm") for mode in MODES]
RUNS += [("long-form-speech", policy, mode, []) for policy in ("wait-k", "llm") for mode in MODES]
RUNS += [("simuleval-text", policy, mode, []) for policy in ("wait-k", "llm") for mode in MODES]
RUNS += [("simuleval-speech", "wait-k", mode, []) for mode in MODES]


def dev_lines(path: Path, n: int, out: Path, name: str) -> Path:
    lines = Path(path).read_text(encoding="utf-8").splitlines()[-200:][:n]
    target = out / name
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def run_name(path: str, policy: str, mode: str, extra: list[str]) -> str:
    prefix = "" if path == "sentences" else f"{path}:"  # sentence runs keep their first names
    return f"{prefix}{policy}-{mode}" + ("-ahead" if extra else "")


def eval_digest(run_dir: Path) -> list[dict]:
    name = "streams.jsonl" if (run_dir / "streams.jsonl").exists() else "instances.jsonl"  # long-form: a row per stream
    rows = [json.loads(line) for line in (run_dir / name).read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda r: r["index"])
    return [{"index": r["index"], "prediction": r["prediction"], "delays": r["delays"]} for r in rows]


def simuleval_digest(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "instances.log").read_text(encoding="utf-8").splitlines()]
    return [{"index": r["index"], "prediction": r["prediction"], "delays": r["delays"]} for r in rows]


class Inputs:
    """The dev lines, their long-form streams and their espeak-ng audio, made once per OUT."""

    def __init__(self, args: argparse.Namespace):
        self.args, out = args, args.out
        self.src = dev_lines(args.data / f"{DEV}.{SRC}", args.lines, out, f"dev.{SRC}")
        self.ref = dev_lines(args.data / f"{DEV}.{TGT}", args.lines, out, f"dev.{TGT}")
        self.speech_src = dev_lines(args.data / f"{DEV}.{SRC}", args.speech_lines, out, f"speech.{SRC}")
        self.speech_ref = dev_lines(args.data / f"{DEV}.{TGT}", args.speech_lines, out, f"speech.{TGT}")
        self.long, self.long_speech = out / "long.jsonl", out / "long-speech.jsonl"
        self.audio, self.wav_list = out / "audio", out / "wav_list.txt"
        self._seqpo("data", "long-form", "--src", self.src, "--ref", self.ref, "--lines", str(args.stream_lines),
                    "--out", self.long)
        self._seqpo("data", "long-form", "--src", self.speech_src, "--ref", self.speech_ref,
                    "--lines", str(args.speech_lines), "--out", self.long_speech)
        self._seqpo("data", "speech", "--src", self.speech_src, "--ref", self.speech_ref, "--out", self.audio)
        wavs = sorted(self.audio.glob("*.wav"))
        self.wav_list.write_text("".join(f"{w.resolve()}\n" for w in wavs), encoding="utf-8")

    def _seqpo(self, *argv) -> None:
        subprocess.run([self.args.seqpo, *map(str, argv), "--pair", PAIR], check=True, env=run_env())

    def command(self, path: str, policy: str, mode: str, extra: list[str], out: Path) -> list[str]:
        model = ["--model", str(self.args.model)] if self.args.model else []
        common = ["--pair", PAIR, "--policy", policy, "--decoding", mode, *model, *extra]
        if path.startswith("simuleval"):
            exe = str(Path(self.args.seqpo).with_name("simuleval"))
            if path == "simuleval-text":
                return [exe, "--agent-class", "seqpo.integrations.simuleval.SeqpoTextAgent", "--source",
                        str(self.src), "--target", str(self.ref), "--eval-latency-unit", "char",
                        "--sacrebleu-tokenizer", "zh", "--no-progress-bar", "--output", str(out), *common]
            return [exe, "--agent-class", "seqpo.integrations.simuleval.SeqpoSpeechAgent", "--source",
                    str(self.wav_list), "--target", str(self.speech_ref), "--source-type", "speech",
                    "--target-type", "text", "--source-segment-size", "500", "--eval-latency-unit", "char",
                    "--sacrebleu-tokenizer", "zh", "--no-progress-bar", "--output", str(out), *common]
        inputs = {"sentences": ["--src", str(self.src), "--ref", str(self.ref)],
                  "long-form": ["--long-form", str(self.long)],
                  "speech": ["--src", str(self.speech_src), "--ref", str(self.speech_ref),
                             "--audio-dir", str(self.audio)],
                  "long-form-speech": ["--long-form", str(self.long_speech), "--audio-dir", str(self.audio)]}[path]
        return [self.args.seqpo, "eval", *inputs, "--out", str(out), "--quiet", *common]


def run_env() -> dict[str, str]:
    return {**os.environ, "SEQPO_THREADS": os.environ.get("SEQPO_THREADS", "1")}


def run(inputs: Inputs, path: str, policy: str, mode: str, extra: list[str], out: Path) -> dict:
    """One run's digest: {"rows": [...]} or {"refused": the error's last line}."""
    if path.startswith("simuleval") and (out / "instances.log").exists():  # simuleval starts over: keep a finished run
        return {"rows": simuleval_digest(out)}
    cmd = inputs.command(path, policy, mode, extra, out)
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, env=run_env(), stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        print(done.stderr[-2000:], file=sys.stderr)
        return {"refused": lines[-1] if lines else f"exit {done.returncode}"}
    return {"rows": simuleval_digest(out) if path.startswith("simuleval") else eval_digest(out)}


def compare(digests: dict, reference: dict) -> bool:
    print("\n| run | instances | identical |\n|---|---|---|")
    same = True
    for name, now in digests.items():
        before = reference.get(name)
        if before is None or "refused" in before and "rows" in now:
            verdict = "new (not run before)" if before is None else "new (refused before)"
        elif "refused" in now:  # refused both times is the same behaviour, whatever the message says now
            verdict = "refused" if "refused" in before else f"NO: refused now ({now['refused'][:80]})"
            same &= "refused" in before
        else:
            verdict = "yes" if before == now else "NO"
            same &= before == now
        print(f"| {name} | {len(now.get('rows', []))} | {verdict} |")
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--lines", type=int, default=10, help="dev lines for the sentence and long-form text runs")
    ap.add_argument("--stream-lines", type=int, default=5, help="lines per long-form text stream")
    ap.add_argument("--speech-lines", type=int, default=3, help="dev lines spoken (one stream of them in long-form)")
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    ap.add_argument("--only", help="run only the paths whose names start with this (e.g. long-form)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SEQPO_DATA", "../shared/data")),
                    help="the folder holding wmt/, the WMT general test sets (docs/data.md; default: $SEQPO_DATA, "
                    "else ../shared/data)")
    ap.add_argument("--compare", type=Path, help="a folder holding the digest.json to compare with")
    ap.add_argument("--seqpo", default=str(Path(sys.executable).with_name("seqpo")))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = Inputs(args)
    digests = {}
    for path, policy, mode, extra in RUNS:
        if args.only and not path.startswith(args.only):
            continue
        name = run_name(path, policy, mode, extra)
        digests[name] = run(inputs, path, policy, mode, extra, args.out / name.replace(":", "-"))
    (args.out / "digest.json").write_text(json.dumps(digests, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.compare is None:
        return 0
    return 0 if compare(digests, json.loads((args.compare / "digest.json").read_text(encoding="utf-8"))) else 1


if __name__ == "__main__":
    sys.exit(main())
