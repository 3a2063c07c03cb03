"""Load test of `seqpo serve`: many concurrent WebSocket speakers for a bounded time.

Starts the real server as a subprocess (default: the tiny random Gemma-3 of tests/conftest.py,
so it measures the serving machinery; `--model bundled` or a path for a real model), runs
`--sessions` clients that each speak sentences word by word at `--wpm` words per minute, and
prints a Markdown table: sentences done, steps, p50/p95 latency of model steps (queue + model, as
the server reports it), how far behind its speaker each sentence's translation finished (the time
from the client's `end` to the `done` event: mean and max, and the means of the round's first and
second half, which a server that keeps up holds level), mean batch size of the model calls, and
errors (which must be 0).
`--audio-sessions N` adds N speech clients streaming an espeak-ng clip in real time (needs the speech
extra and espeak-ng). `--rounds R` runs the load R times against the same server and reports the
server's peak RSS during each round and its RSS 5 s after the round's sessions closed: memory that
stays flat from round to round is not leaking per session.

Usage: python benchmarks/serve_load.py [--sessions 20] [--duration 30] [--model bundled]
       [--audio-sessions 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The city council approved the new budget for public schools yesterday.",
    "My sister lives in a small village near the sea.",
    "Our team released a new version of the software last week.",
    "If it rains tomorrow, we will stay at home and read.",
    "The train to Berlin was late because of the storm.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, extra: list[str], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "seqpo.cli", "serve", "--port", str(port), *extra]
    if model != "bundled":
        cmd += ["--model", model]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit(f"server did not answer /health in 300 s:\n{log_path.read_text()}")


async def speaker(url: str, n: int, args, stats: dict) -> None:
    """One client: speak sentences until the time is up, then finish the current one."""
    pause = 60.0 / args.wpm
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "pair": args.pair, "policy": args.policy}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            stats["errors"].append(ready)
            return
        i = n  # each session starts at a different sentence
        while time.monotonic() < stats["stop_at"]:
            words = SENTENCES[i % len(SENTENCES)].split()
            i += 1

            ended: list[float] = []

            async def talk():
                for j, word in enumerate(words):
                    await ws.send(json.dumps({"type": "source",
                                              "text": word + (" " if j < len(words) - 1 else "")}))
                    await asyncio.sleep(pause)
                await ws.send(json.dumps({"type": "end"}))
                ended.append(time.monotonic())

            talking = asyncio.create_task(talk())
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), args.step_timeout))
                if event["type"] in ("write", "wait"):
                    stats["steps"] += 1
                    if event["elapsed_ms"] > 0:  # a model step (waits without the model cost 0)
                        stats["latency"].append(event["latency_ms"])
                elif event["type"] == "done":
                    stats["sentences"] += 1
                    if event["AL"] is not None:
                        stats["AL"].append(event["AL"])
                    # how far behind the speaker the sentence's translation finished
                    stats["lags"].append((time.monotonic(), time.monotonic() - ended[0] if ended else 0.0))
                    break
                else:
                    stats["errors"].append(event)
                    break
            await talking


async def listener(url: str, pcm: bytes, args, stats: dict) -> None:
    """One speech client: stream the clip in 0.5 s frames at real time, end it, wait for audio_end; repeat."""
    frame = 16000  # bytes: 0.5 s of 16 kHz 16-bit mono PCM
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 16000, "pair": args.pair,
                                  "policy": args.policy}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 300))
        if ready["type"] != "ready":
            stats["errors"].append(ready)
            return
        while time.monotonic() < stats["stop_at"]:
            for i in range(0, len(pcm), frame):
                await ws.send(pcm[i:i + frame])
                await asyncio.sleep(0.5)
            await ws.send(json.dumps({"type": "end"}))
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), args.step_timeout))
                if event["type"] == "error":
                    stats["errors"].append(event)
                elif event["type"] == "done":
                    stats["audio_sentences"] += 1
                elif event["type"] == "audio_end":
                    break
            await ws.send(json.dumps({"type": "start", "input": "audio", "sample_rate": 16000,
                                      "pair": args.pair, "policy": args.policy}))
            if json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] != "ready":
                stats["errors"].append("audio session not ready again")
                return


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc; psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def scrape(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def run_clients(port: int, args, pcm: bytes | None, pid: int) -> dict:
    stats = {"steps": 0, "sentences": 0, "audio_sentences": 0, "latency": [], "AL": [], "errors": [], "lags": [],
             "stop_at": time.monotonic() + args.duration, "peak_rss": rss_mb(pid)}
    url = f"ws://127.0.0.1:{port}/ws/translate"

    async def watch_memory():
        while True:
            stats["peak_rss"] = max(stats["peak_rss"], rss_mb(pid))
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch_memory())
    clients = [speaker(url, n, args, stats) for n in range(args.sessions)]
    clients += [listener(url, pcm, args, stats) for _ in range(args.audio_sessions)]
    results = await asyncio.gather(*clients, return_exceptions=True)
    watcher.cancel()
    stats["errors"] += [repr(r) for r in results if isinstance(r, BaseException)]
    return stats


def lag_summary(lags: list[tuple[float, float]]) -> str:
    """End->done lags of the text sentences: mean / max, then the mean of the sentences finished in
    the first and in the second half of the round (a server that keeps up has no growing lag)."""
    if not lags:
        return "- | -"
    values = [lag for _, lag in sorted(lags)]
    half = len(values) // 2 or 1
    first, second = values[:half], values[half:] or values[:half]
    return (f"{statistics.fmean(values):.2f} / {max(values):.2f} | "
            f"{statistics.fmean(first):.2f} / {statistics.fmean(second):.2f}")


def clip_pcm() -> bytes:
    from seqpo.speech.synth import synthesize

    samples = synthesize("Thank you very much. I would like a cup of tea.")
    return (samples * 32767.0).clip(-32768, 32767).astype("<i2").tobytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="'bundled', a model path, or omit for the tiny random model")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of new sentences (current ones finish)")
    p.add_argument("--wpm", type=float, default=150.0, help="speaking rate of each client, words per minute")
    p.add_argument("--pair", default="en-de")
    p.add_argument("--policy", default="llm", choices=["offline", "wait-k", "llm"])
    p.add_argument("--step-timeout", type=float, default=120.0, help="longest wait for one event (s)")
    p.add_argument("--server-args", default="", help="extra `seqpo serve` flags, e.g. '--batch-size 4'")
    p.add_argument("--audio-sessions", type=int, default=0, help="speech clients streaming a clip in real time")
    p.add_argument("--rounds", type=int, default=1, help="runs of the load against the same server (RSS check)")
    args = p.parse_args()
    pcm = clip_pcm() if args.audio_sessions else None
    rows = []

    with tempfile.TemporaryDirectory(prefix="seqpo-load-") as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        port = free_port()
        log_path = Path(tmp) / "server.log"
        proc = start_server(model, port, args.server_args.split(), log_path)
        try:
            start_rss = rss_mb(proc.pid)
            for _ in range(args.rounds):
                t0 = time.monotonic()
                stats = asyncio.run(run_clients(port, args, pcm, proc.pid))
                stats["wall"] = time.monotonic() - t0
                batches = scrape(port, "seqpo_batch_size_count")
                stats["mean_batch"] = scrape(port, "seqpo_batch_size_sum") / batches if batches else float("nan")
                time.sleep(5.0)  # sessions closed: what the server keeps
                stats["rss_after"] = rss_mb(proc.pid)
                rows.append(stats)
                if stats["errors"]:
                    print("errors:", *stats["errors"][:5], sep="\n  ", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    name = "tiny random" if args.model is None else ("Gemma-3-270M (bundled)" if model == "bundled" else model)
    print(f"\n{args.sessions} text sessions ({args.policy} {args.pair}, {args.wpm:g} words/min each) + "
          f"{args.audio_sessions} audio sessions, {args.duration:g} s of input per round, {os.cpu_count()} CPU "
          f"cores; server RSS at start {start_rss:.0f} MB\n")
    print("| round | model | server args | sentences done | audio sentences | steps | model steps | p50 step latency (ms) "
          "| p95 step latency (ms) | end->done lag, mean / max (s) | lag, first / second half (s) | mean batch "
          "| mean AL | errors | peak RSS (MB) | RSS after close (MB) | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, stats in enumerate(rows, 1):
        lat = stats["latency"]
        mean_al = statistics.fmean(stats["AL"]) if stats["AL"] else float("nan")
        print(f"| {n} | {name} | {args.server_args or '(defaults)'} | {stats['sentences']} | {stats['audio_sentences']} "
              f"| {stats['steps']} | {len(lat)} | {percentile(lat, 50):.0f} | {percentile(lat, 95):.0f} "
              f"| {lag_summary(stats['lags'])} | {stats['mean_batch']:.1f} | {mean_al:.2f} "
              f"| {len(stats['errors'])} | {stats['peak_rss']:.0f} | {stats['rss_after']:.0f} | {stats['wall']:.0f} |")
    sys.exit(1 if any(stats["errors"] for stats in rows) else 0)


if __name__ == "__main__":
    main()
