"""Cached decoding: re-encoding with prefix caching, every episode packed into one sequence (`--decoding cached`).

The `cached` decoding mode computes exactly what `reencode` does (the same prompt ids, the same
positions, each token attending to the tokens before it in its own prompt), but keeps each
episode's cache between steps: a step runs only the tokens of its prompt after the longest prefix
it shares with what the episode holds (the instruction and the source read so far, since in the
SeqPO format the target line comes after the source), plus the tokens it generates. This is what
vLLM's automatic prefix caching does on a GPU; here it is what rollouts of `seqpo train` and
evaluation run on the CPU.

Why one sequence and not one cache row per episode: steps of different episodes need different
numbers of new tokens in the same pass (a whole target line after a read, one token while
decoding), and a batch of rows pads every row to the widest (measured: 2.5x the real tokens on
en-zh rollouts). Packed, a pass runs exactly the new tokens of every running step side by side
([1, tokens]); each column carries its episode and position, and the attention mask lets a token
see the shared prefix (instruction, few-shot examples) and its own episode's earlier tokens at
lower positions, nothing else. A fork (GRPO group) shares the prefix without copying it. Dead
columns (what a prompt no longer shares) are dropped from the cache when they are the majority.
The sliding window of Gemma-3's local layers is applied by position, as in the unpadded prompt.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..generation import forbid_line_end, prompt_ids, shared_ids
from ..requests import Ahead, Completion, Request
from ..languages import LanguagePair
from ..prompts import streaming_prefix
from ..slots import PREFIX, layer_masks
from .decoder import Decoder
from .episode import Entry, EpisodeRow, _StepJob

SHARED = -1  # owner of the shared prefix columns


class CachedEngine(Decoder):
    """`ModelSteps` with prefix caching, every episode packed into one sequence; see the module
    docstring."""

    takes_chat_template = True
    keeps_cache = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # slot, look-ahead and write-ahead do not apply: ignored
        self.cache: DynamicCache | None = None
        self._prefix: tuple | None = None  # (pair, length)
        self.cols: torch.Tensor | None = None  # [3, L]: owner, position, token id of each cache column
        self.alive: torch.Tensor | None = None  # [L] bool
        self.owner: dict[EpisodeRow, int] = {}
        self.shared: dict[EpisodeRow, int] = {}  # how many shared prefix tokens the episode's prompt uses
        self._next_owner = 0

    # -- episodes -------------------------------------------------------------------------------
    def open(self, pair: LanguagePair, reads: list[str] | None = None,
             max_source_tokens: int | None = None) -> EpisodeRow:
        n = self._ensure_prefix(pair)
        state = EpisodeRow(pair)
        self.owner[state], self.shared[state] = self._next_owner, n
        self._next_owner += 1
        self.rows.append(state)  # the open episodes, as in the other modes
        return state

    def read(self, state: EpisodeRow, chunk: str, last: bool = False) -> None:
        return  # each request carries its whole prompt

    def write(self, state: EpisodeRow, segment: str) -> None:
        state.gen_cols, state.gen_ids = [], []  # generated tokens stay; the next prompt decides what is kept

    def close(self, state: EpisodeRow) -> None:
        self.jobs.pop(state, None)
        owner = self.owner.pop(state, None)
        self.shared.pop(state, None)
        if state in self.rows:
            self.rows.remove(state)
        if owner is not None and self.cols is not None:
            self.alive &= self.cols[0] != owner
        if not self.owner:
            self.cache = self.cols = self.alive = None
            self._prefix = None

    def fork(self, state: EpisodeRow, n: int) -> list[EpisodeRow]:
        """`state` and n-1 copies: the shared prefix stays shared; the episode's own columns are copied."""
        copies = []
        own = ((self.cols[0] == self.owner[state]) & self.alive).nonzero()[:, 0] if self.cols is not None else None
        for _ in range(n - 1):
            c = EpisodeRow(state.pair)
            self.owner[c], self.shared[c] = self._next_owner, self.shared[state]
            self._next_owner += 1
            if own is not None and len(own):
                self._append_columns(own, self.owner[c])
            copies.append(c)
        self.rows += copies
        return [state] + copies

    def context(self, state: EpisodeRow) -> list[Entry]:
        """The episode's live tokens in position order: (id, PREFIX, position, 0)."""
        owner, pos, ids = self.cols
        mine = ((owner == self.owner[state]) & self.alive) | ((owner == SHARED) & (pos < self.shared[state]))
        order = mine.nonzero()[:, 0]
        order = order[pos[order].argsort()]
        return [(int(ids[i]), PREFIX, int(pos[i]), 0) for i in order]

    # -- steps -------------------------------------------------------------------------------------
    def _step_job(self, state: EpisodeRow, request: Request, ahead: list[Ahead], then: list[tuple[str, bool]],
                  t0: float) -> _StepJob:
        full = prompt_ids(self.tokenizer, request, self.generator.chat)
        live = [t for t, _, _, _ in self.context(state)]
        k = 0
        limit = min(len(live), len(full) - 1)  # at least one token runs: its logits start the step
        while k < limit and live[k] == full[k]:
            k += 1
        own = (self.cols[0] == self.owner[state]) & self.alive
        if k < self.shared[state]:
            self.shared[state] = k
            self.alive &= ~own
        else:
            self.alive &= ~(own & (self.cols[1] >= k))
        block = [(t, PREFIX, i, 0) for i, t in enumerate(full[k:], k)]
        return _StepJob(request, block, [(len(block) - 1, request, 0, 0)], t0, prompt=full)

    def _entry(self, state: EpisodeRow, job: _StepJob, tok: int) -> Entry:
        return (tok, PREFIX, len(job.prompt) + len(job.ids) - 1, 0)

    def advance(self) -> list[tuple[EpisodeRow, list[Completion | None]]]:
        """One forward pass over every started step: new prompt tokens or the last generated token
        of each, packed side by side; returns the steps that ended with their completions."""
        if not self.jobs:
            return []
        self._compact()
        jobs = list(self.jobs.items())
        ids, owner, pos, last = [], [], [], []
        for s, job in jobs:
            run = job.block if job.entry is None else [job.entry]
            for tok, _, p, _ in run:
                ids.append(tok)
                owner.append(self.owner[s])
                pos.append(p)
            last.append(len(ids) - 1)
        new = torch.tensor([owner, pos, ids])
        shared_of = {o: self.shared[s] for s, o in self.owner.items()}
        keys = torch.cat([self.cols, new], 1)
        alive = torch.cat([self.alive, torch.ones(len(ids), dtype=torch.bool)])
        q_owner, q_pos = new[0][:, None], new[1][:, None]
        k_owner, k_pos = keys[0][None], keys[1][None]
        limit = torch.tensor([shared_of[o] for o in owner])[:, None]
        ok = alive[None] & (k_pos <= q_pos) & ((k_owner == q_owner) | ((k_owner == SHARED) & (k_pos < limit)))
        masks = {"full_attention": self._additive(ok[None])}
        if self.window is not None:
            masks["sliding_attention"] = self._additive((ok & ((q_pos - k_pos) < self.window))[None])
        with torch.inference_mode():
            out = self.model(input_ids=new[2][None].to(self.device), position_ids=new[1][None].to(self.device),
                             attention_mask=layer_masks(self.model, masks), cache=self.cache, use_cache=True,
                             logits_to_keep=torch.tensor(last, device=self.device))
        self.cols, self.alive = keys, alive
        self._tokens += len(ids)
        scores = out.logits[0].float()
        must = [i for i, (_, job) in enumerate(jobs) if job.entry is None and job.request.must_write]
        toks, logps = self._pick_logp(forbid_line_end(scores, must, self.generator.line_end))
        finished = []
        for i, (s, job) in enumerate(jobs):
            if self._next(s, job, int(toks[i]), logps[i] if logps else None):
                finished.append((s, self._finish(s, job)))
        return finished

    # -- the packed cache --------------------------------------------------------------------------
    def _ensure_prefix(self, pair: LanguagePair) -> int:
        if self._prefix is not None:
            if self._prefix[0] != pair:
                raise ValueError("one engine serves one language pair at a time")
            return self._prefix[1]
        ids = shared_ids(self.tokenizer, streaming_prefix(pair) if self.few_shot else "", self.generator.chat)
        self.cache = DynamicCache()  # full layers: the sliding window is applied by our masks
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids], device=self.device), cache=self.cache, use_cache=True,
                       logits_to_keep=1)
        self._tokens += len(ids)
        self.cols = torch.tensor([[SHARED] * len(ids), list(range(len(ids))), ids])
        self.alive = torch.ones(len(ids), dtype=torch.bool)
        self._prefix = (pair, len(ids))
        return len(ids)

    def _append_columns(self, idx: torch.Tensor, owner: int) -> None:
        for layer in self.cache.layers:
            i = idx.to(layer.keys.device)
            layer.keys = torch.cat([layer.keys, layer.keys.index_select(2, i)], 2)
            layer.values = torch.cat([layer.values, layer.values.index_select(2, i)], 2)
        copied = self.cols[:, idx].clone()
        copied[0] = owner
        self.cols = torch.cat([self.cols, copied], 1)
        self.alive = torch.cat([self.alive, torch.ones(len(idx), dtype=torch.bool)])

    def _compact(self) -> None:
        if self.alive is None or int(self.alive.sum()) * 2 > len(self.alive):
            return
        idx = self.alive.nonzero()[:, 0]
        for layer in self.cache.layers:
            i = idx.to(layer.keys.device)
            layer.keys = layer.keys.index_select(2, i)
            layer.values = layer.values.index_select(2, i)
        self.cols, self.alive = self.cols[:, idx], self.alive[idx]
