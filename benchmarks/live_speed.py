"""Live speed, old defaults against new in one run: for the default policy of en-zh and en-de,
seconds per sentence and target tokens per second of `seqpo translate` on dev lines (text, one
sentence at a time as it runs live), and the end-to-end real-time factor of `seqpo translate
--audio` on a spoken dev stream (espeak-ng) of at least `--seconds`: the en-de dev split's English,
spoken line after line, translated into each pair's target.

    SEQPO_CACHE=... SEQPO_THREADS=1 PYTHONPATH=src python benchmarks/live_speed.py \\
        [--lines 10] [--seconds 120] [--configs old,new,new+int8,new+gguf] [--out runs/live-speed]

Configurations: `old` = --decoding reencode (the default before 0.x), `new` = the current defaults
(`decoding` and `quantize` settings), `new+int8` = the new defaults with --quantize int8, `new+gguf`
with --quantize gguf (llama.cpp; the llama-cpp extra). Each
measurement is timed from the moment its model is loaded (start-up left out, as a live server
pays it once) to the last event, both in wall-clock seconds and in CPU seconds of this process
(`time.process_time`; with SEQPO_THREADS=1 it is what one dedicated core would take, which a
shared machine's load does not change much; the wall clock it does). Target tokens are the written
translation's tokens (the model's tokenizer). RTF = seconds per second of audio. Resumable: one
JSONL line per measurement in OUT/live_speed.jsonl; `--table` prints what OUT holds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

from cost_breakdown import spoken_stream

from seqpo.config import PolicySettings
from seqpo.speech.audio import ms_of, read_audio

PAIRS = {"en-zh": ("wmt/generaltest2023.en-zh.en", "zh"), "en-de": ("wmt/generaltest2022.en-de.en", "de")}
DEFAULTS = {name: PolicySettings.__dataclass_fields__[name].default for name in ("decoding", "quantize")}
CONFIGS = {"old": {"decoding": "reencode", "quantize": "off"}, "new": dict(DEFAULTS),
           "new+int8": {**DEFAULTS, "quantize": "int8"}, "new+gguf": {**DEFAULTS, "quantize": "gguf"}}


class Clock:
    """Wall and CPU time from when the model is loaded (the loader wrapped in `module`)."""

    def __init__(self, module, name: str = "load_model"):
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.tokenizer = None

    def __enter__(self):
        def load(*args, **kwargs):
            loaded = self.original(*args, **kwargs)
            self.tokenizer = loaded.tokenizer
            self.wall, self.cpu = time.perf_counter(), time.process_time()
            return loaded

        setattr(self.module, self.name, load)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def text_run(pair: str, lines: list[str], config: dict) -> dict:
    import seqpo.translate as translate_module

    settings = translate_module.TranslateSettings(pair=pair, text="\n".join(lines), json=True, **config)
    out = io.StringIO()
    with Clock(translate_module) as clock:
        translate_module.translate(settings, out)
    done = [e for e in map(json.loads, out.getvalue().splitlines()) if e["type"] == "done"]
    tokens = sum(len(clock.tokenizer(e["prediction"], add_special_tokens=False).input_ids) for e in done)
    return {"sentences": len(done), "tokens": tokens, "wall": clock.wall, "cpu": clock.cpu}


def speech_run(pair: str, wav: Path, config: dict) -> dict:
    from seqpo.speech import translate as speech_translate
    from seqpo.translate import TranslateSettings

    settings = TranslateSettings(pair=pair, audio=str(wav), json=True, **config)
    out = io.StringIO()
    with Clock(speech_translate) as clock:
        speech_translate.translate_audio(settings, out)
    done = [e for e in map(json.loads, out.getvalue().splitlines()) if e["type"] == "done"]
    return {"sentences": len(done), "audio_s": ms_of(len(read_audio(wav))) / 1000.0, "wall": clock.wall,
            "cpu": clock.cpu}


def table(rows: list[dict]) -> None:
    print("| pair | config | decoding | quantize | text: s/sentence (CPU) | text: s/sentence (wall) | "
          "text: target tokens/s (CPU) | speech: audio s | speech: RTF (CPU) | speech: RTF (wall) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keyed = {(r["pair"], r["config"], r["kind"]): r for r in rows}
    for pair in PAIRS:
        for name in CONFIGS:
            t, s = keyed.get((pair, name, "text")), keyed.get((pair, name, "speech"))
            if not (t or s):
                continue
            c = (t or s)["settings"]
            text = [f"{t['cpu'] / t['sentences']:.2f}", f"{t['wall'] / t['sentences']:.2f}",
                    f"{t['tokens'] / t['cpu']:.1f}"] if t else ["", "", ""]
            speech = [f"{s['audio_s']:.0f}", f"{s['cpu'] / s['audio_s']:.2f}", f"{s['wall'] / s['audio_s']:.2f}"] \
                if s else ["", "", ""]
            loads = "/".join(f"{r['load']:.1f}" for r in (t, s) if r)
            print(f"| {pair} | {name} | {c['decoding']} | {c['quantize']} | {' | '.join(text + speech)} | {loads} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=10, help="dev lines per text measurement")
    ap.add_argument("--seconds", type=float, default=120.0, help="at least this much spoken dev text")
    ap.add_argument("--pairs", default="en-zh,en-de")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--kinds", default="text,speech")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SEQPO_DATA", "../shared/data")))
    ap.add_argument("--out", type=Path, default=Path("runs/live-speed"))
    ap.add_argument("--table", action="store_true", help="only print the table of what OUT holds")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "live_speed.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not args.table:
        wav = spoken_stream(args.data, "en-de", args.seconds, args.out) if "speech" in args.kinds else None
        # one round per kind and pair, the configurations side by side in it
        for kind in args.kinds.split(","):
            for pair in args.pairs.split(","):
                for name in args.configs.split(","):
                    if any((r["pair"], r["config"], r["kind"]) == (pair, name, kind) for r in rows):
                        continue
                    config = CONFIGS[name]
                    if kind == "text":
                        source, _ = PAIRS[pair]
                        lines = (args.data / source).read_text(encoding="utf-8").splitlines()[-200:][: args.lines]
                        row = text_run(pair, lines, config)
                    else:
                        row = speech_run(pair, wav, config)
                    row.update(pair=pair, config=name, kind=kind, settings=config, load=os.getloadavg()[0],
                               threads=os.environ.get("SEQPO_THREADS", "all"))
                    rows.append(row)
                    with log.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    table(rows)


if __name__ == "__main__":
    main()
