"""Where a second of speech goes: CPU seconds per second of audio for the speech recognizer, the
text model's prompt tokens (prefill), its generated tokens (decode), its output layer (lm_head) and
everything else (Python), for `seqpo translate --audio` and for one live WebSocket session of
`seqpo serve` (the server's worker path), on a spoken dev stream (espeak-ng, `seqpo.speech.synth`).

    SEQPO_CACHE=... SEQPO_THREADS=1 PYTHONPATH=src python benchmarks/cost_breakdown.py \\
        [--pair en-de] [--seconds 60] [--decoding reencode] [--paths translate,serve] [--out runs/cost]

How each share is measured (process CPU time, `time.process_time`, so that other jobs on a shared
machine slow the wall clock but not the shares; run with SEQPO_THREADS=1 so torch computes on the
calling thread):
- ASR: the CPU time of the process inside `StreamingASR.insert` and `StreamingASR.finish` (the VAD
  and every Whisper decode, CTranslate2's threads included); wrapped by this script.
- prefill / decode / lm_head: forward hooks on the text model (the causal LM under any peft
  wrapper) and on its output layer. A forward pass whose input has more than one new token per row
  is prefill (a prompt, or the tokens a cached step has not seen), one token per row is decode;
  the output layer's own time (its hook) is taken out of both and shown as lm_head.
- other (Python): the process's CPU time over the stream (from the first audio chunk to the last
  event) minus the three above: policy, driver, engine bookkeeping, tokenization, sampling, the
  web server's event loop. The server session streams the audio in real time (0.5 s frames), so
  its "other" includes the event loop's idle polling.
- wall RTF: wall-clock seconds from the first chunk to the last event per second of audio (for the
  server, past the audio's own length: how far behind the translation ends), on a shared machine.
The text model runs the pair's default policy and shipped adapter, in `--decoding` (default: the
`decoding` setting's default).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from seqpo.config import PolicySettings
from seqpo.speech import asr as asr_module
from seqpo.speech.audio import ms_of, read_audio
from seqpo.speech.synth import synthesize, write_wav

DEV = {"en-zh": ("wmt/generaltest2023.en-zh.en", 200), "en-de": ("wmt/generaltest2022.en-de.en", 200)}
PARTS = ("ASR", "prefill", "decode", "lm_head")


def dev_lines(data: Path, pair: str) -> list[str]:
    """The pair's dev split (docs/data.md: the last 200 lines of its test set)."""
    name, n = DEV[pair]
    return (data / name).read_text(encoding="utf-8").splitlines()[-n:]


def spoken_stream(data: Path, pair: str, seconds: float, out: Path) -> Path:
    """Dev lines spoken one after another by espeak-ng until the stream lasts `seconds`; cached as
    a wav in `out` (with the lines it says)."""
    wav = out / f"stream-{pair}-{seconds:g}s.wav"
    if wav.exists():
        return wav
    parts, said, total = [], [], 0
    for line in dev_lines(data, pair):
        samples = synthesize(line)
        parts.append(samples)
        said.append(line)
        total += len(samples)
        if ms_of(total) >= seconds * 1000:
            break
    write_wav(wav, np.concatenate(parts))
    wav.with_suffix(".txt").write_text("\n".join(said) + "\n", encoding="utf-8")
    return wav


class Costs:
    """CPU seconds per part, gathered by hooks and wrappers (one session at a time)."""

    def __init__(self):
        self.cpu = dict.fromkeys(PARTS, 0.0)
        self.tokens = {"prefill": 0, "decode": 0}
        self.passes = {"prefill": 0, "decode": 0}
        self._lock = threading.Lock()

    def add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.cpu[part] += seconds

    def hook_model(self, model) -> None:
        """Forward hooks on the causal LM (under peft's wrapper) and its output layer."""
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        head = lm.get_output_embeddings()
        state = threading.local()

        def lm_pre(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"][..., 0]
            state.kind = "decode" if ids.shape[-1] == 1 else "prefill"
            state.head = 0.0
            state.tokens = int(ids.numel())
            state.t0 = time.process_time()

        def lm_post(_module, _args, _kwargs, _output):
            spent = time.process_time() - state.t0 - state.head
            self.add(state.kind, spent)
            with self._lock:
                self.tokens[state.kind] += state.tokens
                self.passes[state.kind] += 1

        def head_pre(_module, _args):
            state.h0 = time.process_time()

        def head_post(_module, _args, _output):
            spent = time.process_time() - state.h0
            state.head += spent
            self.add("lm_head", spent)

        lm.register_forward_pre_hook(lm_pre, with_kwargs=True)
        lm.register_forward_hook(lm_post, with_kwargs=True)
        head.register_forward_pre_hook(head_pre)
        head.register_forward_hook(head_post)


@contextmanager
def timed_asr(costs: Costs):
    """`StreamingASR.insert` and `.finish` timed (process CPU) for the duration."""
    originals = {name: getattr(asr_module.StreamingASR, name) for name in ("insert", "finish")}

    def wrap(fn):
        def timed(self, *args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(self, *args, **kwargs)
            finally:
                costs.add("ASR", time.process_time() - t0)
        return timed

    for name, fn in originals.items():
        setattr(asr_module.StreamingASR, name, wrap(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(asr_module.StreamingASR, name, fn)


@contextmanager
def hooked_loader(module, name: str, costs: Costs, started: dict):
    """`module.name` (a model loader) wrapped to hook the model it returns and note the CPU time then."""
    original = getattr(module, name)

    def load(*args, **kwargs):
        loaded = original(*args, **kwargs)
        if hasattr(loaded.model, "register_forward_hook"):  # a torch model; llama.cpp's (gguf) is all "other"
            costs.hook_model(loaded.model)
        started["cpu"], started["wall"] = time.process_time(), time.perf_counter()
        return loaded

    setattr(module, name, load)
    try:
        yield
    finally:
        setattr(module, name, original)


def run_translate(wav: Path, pair: str, decoding: str, quantize: str = "off") -> tuple[Costs, float, float, int]:
    """`seqpo translate --audio` (the library call the command makes), JSON events."""
    from seqpo.speech import translate as speech_translate
    from seqpo.translate import TranslateSettings

    costs, started = Costs(), {}
    settings = TranslateSettings(pair=pair, audio=str(wav), json=True, decoding=decoding, quantize=quantize)
    out = io.StringIO()
    with timed_asr(costs), hooked_loader(speech_translate, "load_model", costs, started):
        speech_translate.translate_audio(settings, out)
    cpu, wall = time.process_time() - started["cpu"], time.perf_counter() - started["wall"]
    sentences = sum(1 for line in out.getvalue().splitlines() if json.loads(line)["type"] == "done")
    return costs, cpu, wall, sentences


def run_serve(wav: Path, pair: str, decoding: str, quantize: str = "off") -> tuple[Costs, float, float, int]:
    """One WebSocket audio session of the real server app (uvicorn in a thread of this process),
    streaming the wav in 0.5 s frames at real time."""
    import uvicorn
    from websockets.sync.client import connect

    import seqpo.serve as serve_module
    from seqpo.serve import ServeSettings, build_app, uvicorn_options

    costs, started = Costs(), {}
    with socket_port() as port:
        settings = ServeSettings(pair=pair, decoding=decoding, port=port, quantize=quantize)
    with hooked_loader(serve_module, "load_model_adapters", costs, started), \
            hooked_loader(serve_module, "load_model", costs, started):
        app = build_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    pcm = (np.clip(read_audio(wav), -1, 1) * 32767).astype("<i2").tobytes()
    frame = 16000  # 0.5 s of 16 kHz 16-bit PCM
    sentences = 0
    with timed_asr(costs), connect(f"ws://127.0.0.1:{port}/ws/translate", max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 16000, "pair": pair}))
        ready = json.loads(ws.recv(timeout=300))
        assert ready["type"] == "ready", ready
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def talk():
            for i in range(0, len(pcm), frame):
                ws.send(pcm[i : i + frame])
                time.sleep(0.5)
            ws.send(json.dumps({"type": "end"}))

        talker = threading.Thread(target=talk)
        talker.start()
        while True:
            event = json.loads(ws.recv(timeout=600))
            if event["type"] == "error":
                raise RuntimeError(event)
            sentences += event["type"] == "done"
            if event["type"] == "audio_end":
                break
        talker.join()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server.should_exit = True
    thread.join(timeout=30)
    return costs, cpu, wall, sentences


@contextmanager
def socket_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", default="en-de", choices=list(DEV))
    ap.add_argument("--seconds", type=float, default=60.0, help="at least this much spoken dev text")
    ap.add_argument("--decoding", default=PolicySettings.__dataclass_fields__["decoding"].default)
    ap.add_argument("--quantize", default="off", help="off, int8 or gguf (gguf: the text model's whole cost is "
                    "in 'other', llama.cpp has no hooks)")
    ap.add_argument("--paths", default="translate,serve")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SEQPO_DATA", "../shared/data")))
    ap.add_argument("--out", type=Path, default=Path("runs/cost"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wav = spoken_stream(args.data, args.pair, args.seconds, args.out)
    audio_s = ms_of(len(read_audio(wav))) / 1000.0
    runs = {"translate": run_translate, "serve": run_serve}
    rows = []
    for name in args.paths.split(","):
        costs, cpu, wall, sentences = runs[name](wav, args.pair, args.decoding, args.quantize)
        other = cpu - sum(costs.cpu.values())
        row = {"path": name, "pair": args.pair, "decoding": args.decoding, "quantize": args.quantize, "audio_s": audio_s,
               "sentences": sentences, **{k: v / audio_s for k, v in costs.cpu.items()}, "other": other / audio_s,
               "cpu_per_s": cpu / audio_s, "wall_rtf": wall / audio_s, "tokens": costs.tokens, "passes": costs.passes,
               "load": os.getloadavg()[0]}
        rows.append(row)
        with (args.out / "cost.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    print(f"\nCPU seconds per second of speech ({audio_s:.0f} s spoken {args.pair} dev stream, "
          f"decoding {args.decoding}, quantize {args.quantize}, SEQPO_THREADS={os.environ.get('SEQPO_THREADS', 'all')})\n")
    print("| path | ASR | prefill | decode | lm_head | other (Python) | total CPU | wall RTF | prefill tokens / passes "
          "| decode tokens | sentences | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["cpu_per_s"]
        cells = [f"{r[k]:.3f} ({100 * r[k] / total:.0f}%)" for k in (*PARTS, "other")]
        print(f"| {r['path']} | {' | '.join(cells)} | {total:.3f} | {r['wall_rtf']:.2f} | "
              f"{r['tokens']['prefill']} / {r['passes']['prefill']} | {r['tokens']['decode']} | {r['sentences']} "
              f"| {r['load']:.1f} |")


if __name__ == "__main__":
    main()
