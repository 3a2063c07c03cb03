"""The GRPO update over multi-step streaming episodes (SeqPO-SiMT, arXiv 2505.20622, sec. 3.3).

An episode is many model calls (one per read that ran the model), each with its own prompt that
depends on what earlier steps sampled and on how much source had arrived. The episode's reward
(quality and latency of the whole translation) becomes one group-normalised advantage, applied to
every token the policy sampled in every step of that episode.

Why a focused loop and not TRL's GRPOTrainer: GRPOTrainer samples one completion per prompt from
a fixed dataset and rewards that completion; here a "completion" is a chain of calls whose
prompts are built from the streaming source and the previous samples, and the reward exists only
for the whole chain. Expressing that in GRPOTrainer means replacing its generation, its reward
bookkeeping and its batching, i.e. everything but the loss. What we keep from it is the loss:
per-token clipped ratio, k3 KL estimator to the reference, token-level averaging.

Per token t of a sampled segment, with ratio rho = exp(logp - logp_old):
    loss_t = -( min(rho * A, clip(rho, 1-eps, 1+eps) * A) - beta * KL_t ),
    KL_t = exp(logp_ref - logp) - (logp_ref - logp) - 1
averaged over all sampled tokens of the training step (every micro-batch divides by the step's
token count, so accumulating micro-batch gradients gives exactly the full-batch gradient).
The reference is the same network with its LoRA adapter disabled (`disable_adapter`), not a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .rollout import Rollout


@dataclass
class TokenBatch:
    """Step samples laid out [left pad | prompt | completion | right pad] so that every row's
    completion occupies the same last C columns (logits are computed only there)."""

    input_ids: torch.Tensor  # [B, P + C]
    attention_mask: torch.Tensor  # [B, P + C]
    position_ids: torch.Tensor  # [B, P + C]
    completion_mask: torch.Tensor  # [B, C] 1 where a sampled token is
    completion_ids: torch.Tensor  # [B, C]
    advantages: torch.Tensor  # [B]
    old_logps: torch.Tensor  # [B, C] log-probs when sampled

    @property
    def tokens(self) -> int:
        return int(self.completion_mask.sum())


def flatten(rollouts: list[Rollout], advantages: list[float]) -> list[tuple[list[int], list[int], list[float], float]]:
    """(prompt ids, completion ids, sampled log-probs, advantage) for every model step of every episode."""
    rows = []
    for rollout, adv in zip(rollouts, advantages):
        for s in rollout.samples:
            rows.append((s.prompt_ids, s.token_ids, s.logprobs or [0.0] * len(s.token_ids), adv))
    return rows


def make_batches(rows, pad_id: int, max_rows: int) -> list[TokenBatch]:
    """Micro-batches of at most `max_rows` step samples; sorted by length so padding stays small."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][1]), len(rows[i][0])))
    batches = []
    for start in range(0, len(order), max_rows):
        chunk = [rows[i] for i in order[start : start + max_rows]]
        P = max(len(r[0]) for r in chunk)
        C = max(len(r[1]) for r in chunk)
        B = len(chunk)
        ids = torch.full((B, P + C), pad_id, dtype=torch.long)
        mask = torch.zeros((B, P + C), dtype=torch.long)
        cmask = torch.zeros((B, C), dtype=torch.float32)
        old = torch.zeros((B, C), dtype=torch.float32)
        for b, (prompt, comp, logps, _adv) in enumerate(chunk):
            ids[b, P - len(prompt) : P] = torch.tensor(prompt)
            ids[b, P : P + len(comp)] = torch.tensor(comp)
            mask[b, P - len(prompt) : P + len(comp)] = 1
            cmask[b, : len(comp)] = 1
            old[b, : len(comp)] = torch.tensor(logps, dtype=torch.float32)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        adv = torch.tensor([r[3] for r in chunk], dtype=torch.float32)
        batches.append(TokenBatch(ids, mask, positions, cmask, ids[:, P:], adv, old))
    return batches


def completion_logprobs(model, batch: TokenBatch, device) -> torch.Tensor:
    """log p(token) of each completion column [B, C] (float32), through the model's own forward
    (so softcapping, adapters and a DDP wrapper all apply); logits only for the last C+1 columns."""
    C = batch.completion_ids.shape[1]
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device), logits_to_keep=C + 1, use_cache=False)
    logits = out.logits[:, :-1].float()  # column P-1+j predicts completion token j
    logps = torch.log_softmax(logits, -1)
    return logps.gather(2, batch.completion_ids.to(device).unsqueeze(-1)).squeeze(-1)


def grpo_token_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None,
                    advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float, beta: float,
                    total_tokens: int) -> tuple[torch.Tensor, dict]:
    """Sum over this micro-batch's tokens of the per-token loss, divided by the step's token count."""
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    kl = torch.zeros_like(logps)
    if ref_logps is not None and beta:
        diff = ref_logps - logps
        kl = torch.exp(diff) - diff - 1
        per_token = per_token + beta * kl
    loss = (per_token * mask).sum() / max(1, total_tokens)
    clipped = ((ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)).float()
    stats = {"kl_sum": float((kl.detach() * mask).sum()), "clipped_sum": float((clipped * mask).sum())}
    return loss, stats
