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

from ..generation import forbid_line_end
from ..sft_slots import attention_masks
from ..slots import layer_masks
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


def flatten(rollouts: list[Rollout], advantages: list[float]) -> list[tuple[list[int], list[int], list[float], float, bool]]:
    """(prompt ids, completion ids, sampled log-probs, advantage, must write) for every model step of
    every episode; `must write`: the step's first token could not end the line (the last step)."""
    rows = []
    for rollout, adv in zip(rollouts, advantages):
        for s in rollout.samples:
            rows.append((s.prompt_ids, s.token_ids, s.logprobs or [0.0] * len(s.token_ids), adv, s.must_write))
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
        for b, (prompt, comp, logps, *_) in enumerate(chunk):
            ids[b, P - len(prompt) : P] = torch.tensor(prompt)
            ids[b, P : P + len(comp)] = torch.tensor(comp)
            mask[b, P - len(prompt) : P + len(comp)] = 1
            cmask[b, : len(comp)] = 1
            old[b, : len(comp)] = torch.tensor(logps, dtype=torch.float32)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        adv = torch.tensor([r[3] for r in chunk], dtype=torch.float32)
        batches.append(TokenBatch(ids, mask, positions, cmask, ids[:, P:], adv, old))
    return batches


def completion_logprobs(model, batch: TokenBatch, device, temperature: float = 1.0) -> torch.Tensor:
    """log p(token) of each completion column [B, C] (float32), through the model's own forward
    (so softcapping, adapters and a DDP wrapper all apply); logits only for the last C+1 columns."""
    C = batch.completion_ids.shape[1]
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device), logits_to_keep=C + 1, use_cache=False)
    logits = out.logits[:, :-1].float() / temperature  # column P-1+j predicts completion token j
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


# -- the packed update: every step sample of a group in one prefix tree ---------------------------
# The step samples of one source share most of their tokens: the instruction, the source read so
# far (in the re-encode format the target line comes after the source, so step t's prompt begins
# with step t-1's source), and, between rollouts, whatever they wrote alike. Laid out as rows,
# the update re-runs all of it for every step (tokens grow with the square of the sentence).
# Here the samples become one sequence: a token tree (trie) whose nodes are run once, each at its
# depth as position, attending to its ancestors only, so every node computes exactly what it
# computes inside any row that contains it. transformers' packing (position_ids restarting per
# sequence) only separates sequences, it cannot share their prefixes, hence this hand-built mask.

@dataclass
class TreeBatch:
    """One prefix tree of step samples: N nodes, T scored nodes, M (sample, token) loss terms."""

    input_ids: torch.Tensor  # [1, N]
    position_ids: torch.Tensor  # [1, N] depth of each node
    mask: torch.Tensor  # [1, N, N] bool: node attends to its ancestors and itself
    columns: torch.Tensor  # [T] the node whose logits predict each scored node (its parent)
    targets: torch.Tensor  # [T] the scored node's token
    must_write: torch.Tensor  # [T] bool: scored as a first token that may not end the line
    term_target: torch.Tensor  # [M] index into targets of each sampled token of each step sample
    advantages: torch.Tensor  # [M]
    old_logps: torch.Tensor  # [M] log-probs when sampled

    @property
    def tokens(self) -> int:
        """Sampled tokens this tree scores (each step sample's tokens count, shared or not)."""
        return len(self.term_target)

    @property
    def nodes(self) -> int:
        """Tokens through the model."""
        return self.input_ids.shape[1]


def make_trees(rows, max_nodes: int = 4096) -> list[TreeBatch]:
    """Prefix trees of at most `max_nodes` tokens over `rows` (see `flatten`), filled in order
    (a group's rows are consecutive, so most sharing stays within a tree); a row longer than the
    limit gets a tree of its own."""
    trees, current = [], []
    size: dict = {}
    for row in rows:
        trial = current + [row]
        if current and _tree_size(trial, size) > max_nodes:
            trees.append(_build_tree(current))
            trial, size = [row], {}
            _tree_size(trial, size)
        current = trial
    if current:
        trees.append(_build_tree(current))
    return trees


def _tree_size(rows, seen: dict) -> int:
    """Node count of the tree of `rows`, adding the last row's prefixes to `seen` (a trie as a dict)."""
    prompt, comp = rows[-1][:2]
    node = 0
    for tok in list(prompt) + list(comp):
        node = seen.setdefault((node, tok), len(seen) + 1)
    return len(seen)


def _build_tree(rows) -> TreeBatch:
    children: dict[tuple[int, int], int] = {}
    ids, parent, depth = [], [], []
    scored: dict[tuple[int, bool], int] = {}  # (node, must write) -> index into targets
    term_target, advs, olds = [], [], []
    for prompt, comp, logps, adv, must_write in rows:
        node = -1
        for j, tok in enumerate(list(prompt) + list(comp)):
            key = (node, tok)
            if key not in children:
                children[key] = len(ids)
                ids.append(tok)
                parent.append(node)
                depth.append(depth[node] + 1 if node >= 0 else 0)
            node = children[key]
            if j >= len(prompt):
                key = (node, must_write and j == len(prompt))
                if key not in scored:
                    scored[key] = len(scored)
                term_target.append(scored[key])
                advs.append(adv)
                olds.append(logps[j - len(prompt)])
    n = len(ids)
    mask = torch.zeros((n, n), dtype=torch.bool)
    for i, p in enumerate(parent):  # parents come before their children: one row copy each
        if p >= 0:
            mask[i] = mask[p]
        mask[i, i] = True
    nodes = [v for v, _ in scored]
    if any(parent[v] < 0 for v in nodes):
        raise ValueError("a step sample has no prompt (nothing predicts its first token)")
    return TreeBatch(torch.tensor([ids]), torch.tensor([depth]), mask[None],
                     torch.tensor([parent[v] for v in nodes]), torch.tensor([ids[v] for v in nodes]),
                     torch.tensor([w for _, w in scored], dtype=torch.bool),
                     torch.tensor(term_target), torch.tensor(advs, dtype=torch.float32),
                     torch.tensor(olds, dtype=torch.float32))


def tree_logprobs(model, tree: TreeBatch, device, window: int | None, temperature: float = 1.0,
                  line_end: list[int] | None = None) -> torch.Tensor:
    """log p(token) of each loss term [M] (float32) under the distribution it was sampled from
    (logits / temperature; a must-write first token with the line-end tokens banned, as
    `generation.forbid_line_end` did), through the model's own forward (adapters, soft-capping
    and a DDP wrapper all apply); the LM head runs only on the columns that predict a sampled token."""
    ids, pos = tree.input_ids.to(device), tree.position_ids.to(device)
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) \
        else next(model.parameters()).dtype  # the mask must match the attention's query dtype
    masks = attention_masks(tree.mask.to(device), pos, window, dtype)
    out = model(input_ids=ids, position_ids=pos, use_cache=False,
                attention_mask=layer_masks(model, masks),
                logits_to_keep=tree.columns.to(device))
    logits = out.logits[0].float() / temperature
    if line_end and bool(tree.must_write.any()):
        rows = tree.must_write.nonzero()[:, 0].tolist()
        logits = forbid_line_end(logits, rows, line_end)
    logps = torch.log_softmax(logits, -1)
    scored = logps.gather(1, tree.targets.to(device)[:, None])[:, 0]
    return scored[tree.term_target.to(device)]


# -- the update of the append and slots formats: one sequence per episode ---------------------------
# There a step's "prompt" is no text but the episode's row of the engine's cache, so the update
# scores the episode's transcript as the engine ran it (`engine.transcript`): every entry at the
# position the engine gave it, seeing what it saw then; each sampled token at the entry whose logits
# gave it. The episodes of a batch share the engine's prefix (instruction, few-shot examples),
# which runs once, as in the engine. The result is a TreeBatch (its mask just is no tree's).

def transcript_batches(rollouts: list[Rollout], advantages: list[float], max_nodes: int = 4096) -> list[TreeBatch]:
    """The transcripts of `rollouts` (see above) packed into batches of at most `max_nodes` tokens
    (an episode longer than that gets a batch of its own)."""
    batches, current, size = [], [], 0
    for rollout, adv in zip(rollouts, advantages):
        t = rollout.transcript
        if t is None or not t.picks:
            continue
        own = len(t.entries) - t.prefix
        if current and size + own > max_nodes:
            batches.append(_pack(current))
            current, size = [], 0
        size = size or t.prefix
        current.append((t, adv))
        size += own
    if current:
        batches.append(_pack(current))
    return batches


def _pack(items) -> TreeBatch:
    first = items[0][0]
    P = first.prefix
    parts = [t.tensors() + (t, adv) for t, adv in items]
    ids, pos, mask0 = parts[0][:3]
    N = P + sum(len(p[0]) - P for p in parts)
    mask = torch.zeros((N, N), dtype=torch.bool)
    mask[:P, :P] = mask0[:P, :P]
    all_ids, all_pos = [ids[:P]], [pos[:P]]
    columns, targets, must, advs, olds = [], [], [], [], []
    o = P
    for ids, pos, m, t, adv in parts:
        if t.prefix != P or not torch.equal(ids[:P], all_ids[0]):
            raise ValueError("the transcripts of one batch must share the engine's prefix")
        k = len(ids) - P
        mask[o : o + k, :P] = m[P:, :P]
        mask[o : o + k, o : o + k] = m[P:, P:]
        all_ids.append(ids[P:])
        all_pos.append(pos[P:])
        for pick in t.picks:
            columns.append(pick.column if pick.column < P else o + pick.column - P)
            targets.append(pick.token)
            must.append(pick.must_write)
            advs.append(adv)
            olds.append(pick.logp if pick.logp is not None else 0.0)
        o += k
    M = len(targets)
    return TreeBatch(torch.cat(all_ids)[None], torch.cat(all_pos)[None], mask[None], torch.tensor(columns),
                     torch.tensor(targets), torch.tensor(must, dtype=torch.bool), torch.arange(M),
                     torch.tensor(advs, dtype=torch.float32), torch.tensor(olds, dtype=torch.float32))
