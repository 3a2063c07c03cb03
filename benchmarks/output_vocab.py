"""`--vocab seen` against the full output layer, with and without `--quantize int8`, side by side:
`seqpo eval` on the first `--lines` lines of each dev split (en-zh: the last 200 lines of
generaltest2023, en-de: of generaltest2022; default policy and shipped adapter, `cached` decoding),
one configuration after another in one run, and the output layer alone on one token.

    SEQPO_THREADS=1 python benchmarks/output_vocab.py OUT [--data DIR] [--lines 20]

Prints a Markdown table: quality and latency (from each run's scores.json), predictions identical
to the full fp32 run, model seconds per sentence (wall, from scores.json) and the eval process's
CPU seconds per sentence and per target token written (its model load included), with the load
average beside; then CPU ms of
one output-layer call per configuration. Runs resume (`seqpo eval --out`): a finished one is read back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DEV = {"en-zh": "generaltest2023.en-zh", "en-de": "generaltest2022.en-de"}
CONFIGS = {"off": ("full", "off"), "seen": ("seen", "off"), "int8": ("full", "int8"), "int8+seen": ("seen", "int8")}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "wmt"


def dev_file(data: Path, stem: str, lang: str, n: int, out: Path) -> Path:
    lines = (data / f"{stem}.{lang}").read_text(encoding="utf-8").splitlines()[-200:][:n]
    target = out / f"dev.{stem}.{lang}"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def run_eval(seqpo: str, pair: str, src: Path, ref: Path, vocab: str, quantize: str, out: Path) -> None:
    """One `seqpo eval` run, and the CPU seconds of its process beside its scores.json."""
    if (out / "scores.json").exists():
        return
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([seqpo, "eval", "--pair", pair, "--src", str(src), "--ref", str(ref),
                    "--out", str(out), "--quiet", "--decoding", "cached", "--vocab", vocab, "--quantize", quantize],
                   check=True, env={**os.environ, "SEQPO_THREADS": os.environ.get("SEQPO_THREADS", "1")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (out / "cpu_seconds.json").write_text(json.dumps({"cpu_seconds": cpu, "load": os.getloadavg()[0]}))


def target_tokens(run: Path) -> int:
    """Tokens of the run's predictions, as the bundled tokenizer writes them."""
    from seqpo.model import load_tokenizer

    texts = list(predictions(run).values())
    return sum(len(ids) for ids in load_tokenizer(None)(texts, add_special_tokens=False).input_ids)


def predictions(run: Path) -> dict[int, str]:
    rows = [json.loads(line) for line in (run / "instances.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["index"]: r["prediction"] for r in rows}


def head_costs(calls: int = 30) -> dict[str, float]:
    """CPU ms of one output-layer call on one token, per configuration."""
    import torch

    from seqpo.model import load_model

    costs = {}
    hidden = torch.randn(1, 1, 640)
    for name, (vocab, quantize) in CONFIGS.items():
        head = load_model(vocab=vocab, quantize=quantize).model.get_output_embeddings()
        with torch.inference_mode():
            head(hidden)
            start = time.process_time()
            for _ in range(calls):
                head(hidden)
        costs[name] = 1000 * (time.process_time() - start) / calls
    return costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--data", default=str(SHARED), help="folder of generaltest{year}.{pair}.{lang} files")
    ap.add_argument("--lines", type=int, default=20)
    ap.add_argument("--seqpo", default=str(Path(sys.executable).with_name("seqpo")))
    ap.add_argument("--order", default=",".join(CONFIGS), help="the configurations, in the order they run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [("| pair | config | BLEU | chrF | AL | LAAL | identical to off | model s/sentence (wall) "
             "| CPU s/sentence (process) | CPU ms/target token | load |"), "|---" * 11 + "|"]
    for pair, stem in DEV.items():
        source, target = pair.split("-")
        src = dev_file(Path(args.data), stem, source, args.lines, out)
        ref = dev_file(Path(args.data), stem, target, args.lines, out)
        for name in args.order.split(","):
            print(f"{pair} {name} ...", file=sys.stderr, flush=True)
            run_eval(args.seqpo, pair, src, ref, *CONFIGS[name], out / f"{pair}-{name}")
        base = predictions(out / f"{pair}-off")
        for name in CONFIGS:
            run = out / f"{pair}-{name}"
            scores = json.loads((run / "scores.json").read_text())
            cpu = json.loads((run / "cpu_seconds.json").read_text()) if (run / "cpu_seconds.json").exists() else {}
            mine = predictions(run)
            same = sum(mine[i] == base[i] for i in base)
            n = scores["sentences"]
            cpu_s = (f"{cpu['cpu_seconds'] / n:.2f} | {1000 * cpu['cpu_seconds'] / target_tokens(run):.0f}"
                     if cpu else " | ")
            load = f"{cpu['load']:.1f}" if cpu else ""
            rows.append(f"| {pair} | {name} | {scores['BLEU']:.2f} | {scores['chrF']:.2f} | {scores['AL']:.2f} | "
                        f"{scores['LAAL']:.2f} | {same}/{len(base)} | {scores['model_seconds_per_sentence']:.2f} | "
                        f"{cpu_s} | {load} |")
    print("\n".join(rows))
    costs = head_costs()
    print("\n| output layer (one token) | " + " | ".join(costs) + " |\n|---|" + "---|" * len(costs))
    print("| CPU ms per call | " + " | ".join(f"{ms:.1f}" for ms in costs.values()) + " |")


if __name__ == "__main__":
    main()
