"""`seqpo bench`: speed of the streaming decoding modes (re-encode, append, slots: ExPosST,
MISSION.md sec. 2) against offline decoding of the same sentences, in one run on one model.

Per mode: tokens run through the model, forward passes, wall time, ms per output token, mean time
to first write (from the start of the run, when all sentences start together), and the ratio to
offline wall time. append and slots run twice: one read per forward pass, and with look-ahead
(`--lookahead`, several reads decided per pass; the bench checks the translations are unchanged).
Plus GRPO-style rollouts: a forked group of B episodes of one source vs B separately run episodes
(episodes per minute).
Wall times on a shared machine move between runs; ratios within one run are what to compare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import setting
from .errors import InputFileError
from .languages import check_supported, parse_pair


@dataclass
class BenchSettings:
    pair: str = setting("en-zh", "language pair, source-target")
    src: str = setting(None, "source file, one sentence per line")
    limit: int = setting(4, "benchmark the first N non-empty lines")
    policy: str = setting("llm", "streaming policy timed in every mode", choices=["wait-k", "llm"])
    k: int = setting(3, "wait-k: reads before the first write")
    chunk: int = setting(1, "source units per read")
    slot: int = setting(16, "slots decoding: slot length in tokens")
    batch_size: int = setting(8, "sentences decoded together")
    group: int = setting(5, "rollouts per source for the fork comparison (0: skip it)")
    modes: str = setting("reencode,append,slots", "comma-separated decoding modes to time")
    lookahead: int = setting(8, "append/slots: also time them deciding up to this many later reads per forward "
                             "pass (same output; 0: skip those rows)")
    model: str = setting(None, "causal LM (default: the bundled Gemma-3-270M)")

    def validate(self):
        pair = check_supported(parse_pair(self.pair))
        if not self.src:
            raise InputFileError("--src is required")
        if min(self.limit, self.chunk, self.slot, self.batch_size) < 1 or min(self.group, self.lookahead) < 0:
            raise InputFileError("--limit, --chunk, --slot and --batch-size must be at least 1, "
                                 "--group and --lookahead at least 0")
        return pair


def _timed(sources, policy, engine, pair, chunk, width, group=1):
    from .simulate import run_episodes

    first_write = {}
    forwards = [0]
    model_forward = engine.model.forward

    def counted(*args, **kwargs):  # one pass over the weights each: what a CPU's time goes to
        forwards[0] += 1
        return model_forward(*args, **kwargs)

    engine.model.forward = counted
    t0 = time.perf_counter()
    tokens0 = engine.tokens_processed

    def on_step(key, episode, step):
        if step.written and id(episode) not in first_write:
            first_write[id(episode)] = time.perf_counter()

    try:
        episodes = run_episodes(sources, policy, engine, pair, chunk, on_step=on_step, width=width, group=group)
    finally:
        del engine.model.forward  # back to the class's method
    wall = time.perf_counter() - t0
    # from the start of the run: with --limit <= --batch-size every episode starts then (lockstep)
    ttfw = [first_write[i] - t0 for i in first_write]
    out_tokens = sum(len(engine.tokenizer(e.prediction, add_special_tokens=False).input_ids) for e in episodes)
    return episodes, wall, engine.tokens_processed - tokens0, out_tokens, ttfw, forwards[0]


def run_bench(settings: BenchSettings, loaded=None, log=print) -> list[dict]:
    """Time every mode (and offline) on the same sentences; returns the table rows."""
    from .engine import make_engine
    from .evaluate import read_lines
    from .model import load_model
    from .policies import make_policy

    pair = settings.validate()
    lines = [x for x in read_lines(settings.src, "source") if x.strip()][: settings.limit]
    sources = list(enumerate(lines))
    loaded = loaded or load_model(settings.model)
    rows = []

    def add(name, episodes, wall, tokens, out_tokens, ttfw, forwards):
        rows.append({"decoding": name, "model_tokens": tokens, "forward_passes": forwards, "wall_s": round(wall, 2),
                     "ms_per_output_token": round(1000 * wall / max(1, out_tokens), 1),
                     "first_write_s": round(sum(ttfw) / len(ttfw), 2) if ttfw else None,
                     "output_tokens": out_tokens})
        log(f"  {name}: {wall:.1f} s, {tokens} model tokens")

    offline = make_engine(loaded, "reencode", batch_size=settings.batch_size)
    add("offline", *_timed(sources, make_policy("offline"), offline, pair, settings.chunk, settings.batch_size))
    policy = make_policy(settings.policy, k=settings.k, chunk=settings.chunk)
    modes = [m.strip() for m in settings.modes.split(",") if m.strip()]
    for mode in modes:
        engine = make_engine(loaded, mode, settings.slot, settings.batch_size)
        stepwise, *timing = _timed(sources, policy, engine, pair, settings.chunk, settings.batch_size)
        add(f"{mode} ({settings.policy})", stepwise, *timing)
        if mode != "reencode" and settings.lookahead:
            engine = make_engine(loaded, mode, settings.slot, settings.batch_size, lookahead=settings.lookahead)
            episodes, *timing = _timed(sources, policy, engine, pair, settings.chunk, settings.batch_size)
            add(f"{mode} ({settings.policy}, look-ahead {settings.lookahead})", episodes, *timing)
            same = [a.prediction == b.prediction for a, b in zip(stepwise, episodes)]
            rows[-1]["same_output"] = all(same)  # look-ahead must not change a single translation
            if not all(same):
                log(f"  WARNING: look-ahead changed {same.count(False)} of {len(same)} translations")
    base = rows[0]["wall_s"]
    for row in rows:
        row["x_offline"] = round(row["wall_s"] / base, 2) if base else None
    if settings.group > 1:
        import torch

        for mode in modes:
            sampling = dict(do_sample=True, temperature=1.0)
            for how in ("forked", "separate"):
                torch.manual_seed(0)
                engine = make_engine(loaded, mode, settings.slot, settings.batch_size, lookahead=settings.lookahead,
                                     **sampling)
                src = sources[:1]
                t0 = time.perf_counter()
                if how == "forked":
                    _timed(src, policy, engine, pair, settings.chunk, 1, group=settings.group)
                else:  # one episode after another, as without a shared engine state
                    for _ in range(settings.group):
                        _timed(src, policy, engine, pair, settings.chunk, 1)
                per_min = 60 * settings.group / (time.perf_counter() - t0)
                [r for r in rows if r["decoding"].startswith(mode)][-1][f"rollouts_per_min_{how}"] = round(per_min, 1)
                log(f"  {mode} rollouts {how}: {per_min:.1f} episodes/min")
    return rows


COLUMNS = [("decoding", "decoding"), ("model_tokens", "tokens through model"), ("forward_passes", "forward passes"),
           ("output_tokens", "output tokens"), ("wall_s", "wall s"),
           ("ms_per_output_token", "ms / output token"), ("first_write_s", "first write s"),
           ("x_offline", "x offline wall"), ("rollouts_per_min_forked", "rollouts/min forked"),
           ("rollouts_per_min_separate", "rollouts/min separate")]


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])
