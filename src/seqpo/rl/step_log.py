"""What a `seqpo train` step logs: its sums over every process (`StepStats`, one all-reduce) and
its log.jsonl line, appended and fsynced before the step's checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .update import Scored, UpdateSums


@dataclass
class StepStats:
    """A step's sums, per process until `reduce` adds those of every process (one all-reduce)."""

    reward: float = 0.0
    reward_sq: float = 0.0
    episodes: float = 0.0
    quality: float = 0.0
    al: float = 0.0
    laal: float = 0.0
    wait_fraction: float = 0.0
    kl: float = 0.0
    clipped: float = 0.0
    logp_gap: float = 0.0
    tokens: float = 0.0
    loss: float = 0.0

    @classmethod
    def of(cls, scored: Scored, update: UpdateSums) -> StepStats:
        s = scored.scores
        return cls(sum(scored.rewards), sum(r * r for r in scored.rewards), len(scored.rewards),
                   sum(x.quality for x in s), sum(x.latency for x in s), sum(x.laal for x in s),
                   sum(x.wait_fraction for x in s), update.kl_sum, update.clipped_sum, update.logp_gap_sum,
                   update.tokens, update.loss)

    def reduce(self, accelerator) -> StepStats:
        names = [f.name for f in fields(self)]
        local = torch.tensor([getattr(self, n) for n in names], dtype=torch.float64, device=accelerator.device)
        return StepStats(*accelerator.reduce(local, "sum").tolist())


def log_record(step: int, stats: StepStats, update: UpdateSums, generator, rollout_s: float, update_s: float,
               processes: int) -> dict:
    """The step's log.jsonl line: means over all processes' episodes (reward, quality, latency) or
    sampled tokens (KL, clipping, log-prob gap)."""
    n, tok = max(1.0, stats.episodes), max(1.0, stats.tokens)
    mean_r = stats.reward / n
    return {
        "step": step,
        "reward_mean": round(mean_r, 4),
        "reward_std": round(max(0.0, stats.reward_sq / n - mean_r * mean_r) ** 0.5, 4),
        "quality": round(stats.quality / n, 3),
        "AL": round(stats.al / n, 3),
        "LAAL": round(stats.laal / n, 3),
        "wait_fraction": round(stats.wait_fraction / n, 4),
        "kl": round(stats.kl / tok, 6),
        "clipped_fraction": round(stats.clipped / tok, 4),
        "logp_gap": round(stats.logp_gap / tok, 5),  # mean |teacher-forced - sampled| log-prob (numerics)
        "loss": round(stats.loss, 6),
        "tokens": int(stats.tokens),
        "update_tokens": update.update_tokens,  # tokens through the model per forward of the update (this process)
        "rollout_tokens": getattr(generator, "tokens_processed", None),
        "tokens_per_s": round(update.tokens / rollout_s, 2) if rollout_s > 0 else None,
        "rollout_s": round(rollout_s, 2),
        "update_s": round(update_s, 2),
        "grad_norm": round(update.grad_norm, 5) if update.grad_norm is not None else None,
        "episodes": int(stats.episodes),
        "processes": processes,
    }


def append_log(log_path: Path, lines: list[dict]) -> None:
    """Append and fsync: a line is on disk before the step's checkpoint is written."""
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in lines))
        fh.flush()
        os.fsync(fh.fileno())

