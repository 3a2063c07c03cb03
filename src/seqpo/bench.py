"""`seqpo bench`: speed of the streaming decoding modes (re-encode, append, slots: ExPosST,
Shang et al., arXiv 2603.14903) against offline decoding of the same sentences, in one run on one model.

Per mode: tokens run through the model, forward passes, wall time, ms per output token, mean time
to first write (from the start of the run, when all sentences start together), and the ratio to
offline wall time. append and slots run twice: one read per forward pass, and with look-ahead
(`--lookahead`, several reads decided per pass; the bench checks the translations are unchanged).
Plus GRPO-style rollouts: a forked group of B episodes of one source vs B separately run episodes
(episodes per minute).
Wall times on a shared machine move between runs; ratios within one run are what to compare.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from .config import BARE_MODEL, resolve_adapter_setting, uses_few_shot
from .engine import REFERENCE_MODE, engine_class, make_engine
from .errors import InputFileError
from .files import read_lines
from .model import load_model
from .policies import make_policy
from .bench_settings import BenchSettings
from .simulate import run_episodes


def _timed(sources, policy, engine, pair, chunk, width, group=1):
    first_write = {}
    forwards = [0]
    base = engine.model.get_base_model() if hasattr(engine.model, "get_base_model") else engine.model

    def count(_module, _args):  # one pass over the weights each, whatever wraps the model (peft, generate)
        forwards[0] += 1

    hook = base.get_decoder().register_forward_pre_hook(count)
    t0 = time.perf_counter()
    tokens0 = engine.tokens_processed

    def on_step(key, episode, step):
        if step.written and id(episode) not in first_write:
            first_write[id(episode)] = time.perf_counter()

    try:
        episodes = run_episodes(sources, policy, engine, pair, chunk, on_step=on_step, width=width, group=group)
    finally:
        hook.remove()
    wall = time.perf_counter() - t0
    # from the start of the run: with --limit <= --batch-size every episode starts then
    ttfw = [first_write[i] - t0 for i in first_write]
    out_tokens = sum(len(engine.tokenizer(e.prediction, add_special_tokens=False).input_ids) for e in episodes)
    return episodes, wall, engine.tokens_processed - tokens0, out_tokens, ttfw, forwards[0]


def run_bench(settings: BenchSettings, loaded=None, log=print) -> list[dict]:
    """Time every mode (and offline) on the same sentences; returns the table rows."""
    pair = settings.validate()
    lines = [x for x in read_lines(settings.src, "source") if x.strip()][: settings.limit]
    sources = list(enumerate(lines))
    adapter = None
    if settings.adapter != BARE_MODEL:
        adapter = resolve_adapter_setting(None if settings.adapter == "default" else settings.adapter, settings.pair,
                                          settings.model)
        if not adapter:
            raise InputFileError(f"no adapter ships for {settings.pair} with this model")
    # the chat template applies to the modes that re-encode the SeqPO prompt (`engine.make_engine`)
    loaded = loaded or load_model(settings.model, adapter, settings.dtype, settings.device, settings.chat_template)
    few_shot = uses_few_shot("auto", adapter)
    policy = make_policy(settings.policy, k=settings.k, chunk=settings.chunk, few_shot=few_shot)
    modes = [m.strip() for m in settings.modes.split(",") if m.strip()]
    # (row name, policy, engine settings): offline first, it is the reference of the ratios
    runs = [("offline", make_policy("offline", few_shot=few_shot), REFERENCE_MODE, (0, False))]
    for mode in modes:
        runs.append((f"{mode} ({settings.policy})", policy, mode, (0, False)))
        if not engine_class(mode).incremental:  # look-ahead and write-ahead apply to append/slots
            continue
        la = settings.lookahead
        variants = [((la, False), f"look-ahead {la}"), ((0, True), "write-ahead"), ((la, True), f"look-ahead {la} + write-ahead")]
        for early, label in variants if la else variants[1:2]:
            runs.append((f"{mode} ({settings.policy}, {label})", policy, mode, early))
    # warm-up (thread pools, allocator, kernels): untimed, or the first timed row pays for it
    _timed(sources[:1], runs[0][1], make_engine(loaded, REFERENCE_MODE, batch_size=1, few_shot=few_shot), pair,
           settings.chunk, 1)
    walls: dict[str, list[float]] = {name: [] for name, *_ in runs}
    firsts: dict[str, list[float]] = {name: [] for name, *_ in runs}
    rows: dict[str, dict] = {}
    outputs: dict[str, list[str]] = {}
    for rep in range(settings.repeats):  # rounds over every row, so slow spells of a shared machine hit all
        for name, pol, mode, (lookahead, write_ahead) in runs:
            engine = make_engine(loaded, mode, settings.slot, settings.batch_size, few_shot=few_shot,
                                 lookahead=lookahead, write_ahead=write_ahead)
            episodes, wall, tokens, out_tokens, ttfw, forwards = _timed(sources, pol, engine, pair, settings.chunk,
                                                                        settings.batch_size)
            walls[name].append(wall)
            firsts[name].append(sum(ttfw) / len(ttfw) if ttfw else float("nan"))
            rows[name] = {"decoding": name, "model_tokens": tokens, "forward_passes": forwards, "output_tokens": out_tokens}
            outputs[name] = [e.prediction for e in episodes]
            log(f"  [{rep + 1}/{settings.repeats}] {name}: {wall:.1f} s, {forwards} passes, {tokens} model tokens")
    for name, pol, mode, early in runs:
        row = rows[name]
        wall = statistics.median(walls[name])
        row["wall_s"] = round(wall, 2)
        row["ms_per_output_token"] = round(1000 * wall / max(1, row["output_tokens"]), 1)
        first = statistics.median(firsts[name])
        row["first_write_s"] = None if math.isnan(first) else round(first, 2)
        if any(early):  # deciding reads early must not change a single translation
            stepwise = outputs[f"{mode} ({settings.policy})"]
            row["same_output"] = stepwise == outputs[name]
            if not row["same_output"]:
                log(f"  WARNING: {name} changed a translation")
    rows = [rows[name] for name, *_ in runs]
    base = rows[0]["wall_s"]
    for row in rows:
        row["x_offline"] = round(row["wall_s"] / base, 2) if base else None
    if settings.group > 1:
        for mode in modes:
            sampling = dict(do_sample=True, temperature=1.0)
            for how in ("forked", "separate"):
                torch.manual_seed(0)
                engine = make_engine(loaded, mode, settings.slot, settings.batch_size, few_shot=few_shot, **sampling)
                src = sources[:1]
                t0 = time.perf_counter()
                if how == "forked":
                    _timed(src, policy, engine, pair, settings.chunk, 1, group=settings.group)
                else:  # one episode after another, as without a shared engine state
                    for _ in range(settings.group):
                        _timed(src, policy, engine, pair, settings.chunk, 1)
                per_min = 60 * settings.group / (time.perf_counter() - t0)
                next(r for r in rows if r["decoding"].startswith(mode))[f"rollouts_per_min_{how}"] = round(per_min, 1)
                log(f"  {mode} rollouts {how}: {per_min:.1f} episodes/min")
    return rows


COLUMNS = [("decoding", "decoding"), ("model_tokens", "tokens through model"), ("forward_passes", "forward passes"),
           ("output_tokens", "output tokens"), ("wall_s", "wall s"),
           ("ms_per_output_token", "ms / output token"), ("first_write_s", "first write s"),
           ("x_offline", "x offline wall"), ("same_output", "same output as stepwise"),
           ("rollouts_per_min_forked", "rollouts/min forked"), ("rollouts_per_min_separate", "rollouts/min separate")]


def _cell(value) -> str:
    if value is None:
        return ""
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])
