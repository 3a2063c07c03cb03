"""The update of one `seqpo train` step: `--updates-per-batch` AdamW updates with the GRPO token
loss (grpo.py) on every token sampled in the step, the gradients of its micro-batches (or prefix
trees, or in the append/slots formats packed episode transcripts) accumulated, on every process alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..generation import line_end_ids
from ..slots import sliding_window
from .grpo import (completion_logprobs, flatten, grpo_token_loss, make_batches, make_trees, transcript_batches,
                   tree_logprobs)
from .train_settings import TrainSettings
from .training_run import TrainingRun


@dataclass
class Scored:
    """A step's rollouts of this process, flat over its groups, each with its score, reward and advantage."""

    rollouts: list
    scores: list  # rollout.EpisodeScore
    rewards: list[float]
    advantages: list[float]


@dataclass
class UpdateSums:
    """What the update of one step measured on this process (sums over its sampled tokens)."""

    tokens: int  # sampled tokens trained on
    update_tokens: int  # tokens through the model per forward pass (tree nodes or unpadded row tokens)
    loss: float = 0.0
    kl_sum: float = 0.0
    clipped_sum: float = 0.0
    logp_gap_sum: float = 0.0  # |teacher-forced - sampled| log-prob, summed (numerics)
    grad_norm: float | None = None


def token_logprobs(net, batch, settings: TrainSettings, device, window, line_end):
    """(log-probs, mask, sampled log-probs, advantages) of a batch's sampled tokens, shaped for
    `grpo_token_loss`: [B, C] per padded row, or [M, 1] per (step sample, token) of a tree."""

    if settings.update == "tree":
        logps = tree_logprobs(net, batch, device, window, settings.temperature, line_end)[:, None]
        return logps, torch.ones_like(logps), batch.old_logps.to(device)[:, None], batch.advantages.to(device)
    return (completion_logprobs(net, batch, device, settings.temperature), batch.completion_mask.to(device),
            batch.old_logps.to(device), batch.advantages.to(device))


def update_policy(run: TrainingRun, scored: Scored, settings: TrainSettings, beta: float) -> UpdateSums:
    """`--updates-per-batch` AdamW updates on every token sampled in the step (GRPO token loss)."""

    accelerator, device = run.accelerator, run.accelerator.device
    window, line_end = sliding_window(run.model), line_end_ids(run.loaded.tokenizer)
    if settings.incremental():  # append/slots: one sequence per episode, its transcript (grpo.py)
        rows = transcript_batches(scored.rollouts, scored.advantages, settings.tree_tokens)
        local_tokens = sum(b.tokens for b in rows)
    else:
        rows = flatten(scored.rollouts, scored.advantages)
        local_tokens = sum(len(r[1]) for r in rows)
    total_tokens = int(accelerator.reduce(torch.tensor(float(local_tokens), device=device), "sum").item())
    scale = accelerator.num_processes  # DDP averages gradients over processes; the loss is a global mean
    # every process must run the same number of backward passes (DDP synchronises the last one),
    # so all split their rows into the largest count; a process with fewer rows repeats its last
    # micro-batch at weight 0
    if settings.update == "tree":
        batches = rows if settings.incremental() else make_trees(rows, settings.tree_tokens)
        n_batches = int(accelerator.gather(torch.tensor([len(batches)], device=device)).max())
    else:
        n_batches = int(accelerator.gather(torch.tensor([-(-len(rows) // settings.micro_batch)], device=device)).max())
        batches = make_batches(rows, run.loaded.tokenizer.pad_token_id, -(-len(rows) // n_batches))
    result = UpdateSums(local_tokens, sum(b.nodes if settings.update == "tree" else int(b.attention_mask.sum())
                                          for b in batches))
    weights = [1.0] * len(batches) + [0.0] * (n_batches - len(batches))
    batches += [batches[-1]] * (n_batches - len(batches))
    ref_cache: dict[int, torch.Tensor] = {}
    for update in range(settings.updates_per_batch):
        for i, batch in enumerate(batches):
            sync = contextlib.nullcontext() if i == len(batches) - 1 else accelerator.no_sync(run.wrapped)
            with sync, accelerator.autocast():
                logps, mask, sampled, advs = token_logprobs(run.wrapped, batch, settings, device, window, line_end)
                if beta and i not in ref_cache:
                    with torch.no_grad(), run.model.disable_adapter():
                        ref_cache[i] = token_logprobs(run.model, batch, settings, device, window, line_end)[0].detach()
                # one update per batch: on-policy, old = current (exactly what sampled the tokens);
                # more updates: the log-probs recorded when sampling are the old policy
                old = logps.detach() if settings.updates_per_batch == 1 else sampled
                loss, s = grpo_token_loss(logps, old, ref_cache.get(i), advs, mask, settings.clip_eps, beta,
                                          total_tokens)
                accelerator.backward(loss * scale * weights[i])
            if update == 0 and weights[i]:
                result.loss += float(loss.detach())
                result.kl_sum += s["kl_sum"]
                result.clipped_sum += s["clipped_sum"]
                result.logp_gap_sum += float(((logps.detach() - sampled).abs() * mask).sum())
        if settings.max_grad_norm:
            result.grad_norm = float(accelerator.clip_grad_norm_(run.trainable, settings.max_grad_norm))
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return result

