"""The row cache of the incremental decoding modes (append, slots): episodes as rows of one batched
cache, and continuous batching of their steps.

All open episodes share one batched cache; rows of different lengths are aligned with *dead*
entries (padding inside the cache, masked for every query), so every model call still batches all
episodes. Positions and masks are explicit, which is why this is a hand loop and not `generate`:
`generate` derives positions from the 2D mask and applies Gemma-3's sliding window by cache index,
so dead entries would shift both, and it cannot change per-row masks per step the way slots need.
Generated tokens the policy does not keep are marked dead rather than cropped, so one row's
rollback never touches the others.

`fork(row, n)` copies one episode's row n times (GRPO groups): the few-shot prefix and the source
read so far are shared, not recomputed.

Steps are continuously batched: `start` begins an episode's step, `advance` runs one forward pass
over every running step (new blocks next to decode tokens) and returns the steps that ended, so an
episode never waits for the longest step of the batch.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache

from ..errors import SeqpoError
from ..generation import forbid_line_end
from ..languages import LanguagePair
from ..requests import Ahead, Completion, Request
from ..slots import DEAD, PREFIX, layer_masks, visible
from .decoder import Decoder
from .early import EarlyDecisions
from .episode import Entry, EpisodeRow, _StepJob
from .transcript import Transcript


class RowCacheEngine(EarlyDecisions, Decoder):
    """Each episode a row of one batched cache (append and slots); a mode fills in the hooks (how a
    read becomes tokens, how a write commits, the entry of a generated token)."""

    incremental = True
    keeps_cache = True
    row_type = EpisodeRow

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache: DynamicCache | None = None
        self.tags: torch.Tensor | None = None  # [4, B, L]: kind, position, vis, token id per entry
        self._prefix: tuple | None = None  # (pair, per-layer (keys, values), length, ids)
        self.record = False  # keep each row's transcript (`transcript.py`; training in these formats)
        self._passes = 0  # forward passes run (the prefix is pass 0)

    # -- mode hooks -------------------------------------------------------------------------------
    def _prefix_ids(self, pair: LanguagePair) -> list[int]:
        """The shared prefix every row starts with (instruction, few-shot examples)."""
        raise NotImplementedError

    def _opened(self, row: EpisodeRow, reads: list[str] | None, max_source_tokens: int | None) -> None:
        """Set up a new row after the prefix (slots: its source region and target line start)."""

    def _read_ids(self, pair: LanguagePair, chunk: str, last: bool, first: bool = False) -> list[int]:
        """A read's tokens."""
        raise NotImplementedError

    def _read_entries(self, row: EpisodeRow, chunk: str, last: bool) -> list[Entry]:
        """The cache entries of a read (`row.n_read` already counts it)."""
        raise NotImplementedError

    def _segment_ids(self, row: EpisodeRow, segment: str) -> list[int]:
        """The tokens a written segment adds to the row."""
        raise NotImplementedError

    def _commit(self, row: EpisodeRow, want: list[int], keep: int) -> list[int]:
        """Commit a written segment whose first `keep` tokens the model generated; returns the cache
        columns that become dead."""
        raise NotImplementedError

    def _step_tokens(self, row: EpisodeRow) -> list[Entry]:
        """The entries a step starts with: the row's pending ones."""
        return list(row.pending)

    def _started(self, row: EpisodeRow, job: _StepJob, cols: list[int]) -> None:
        """A step's block has run (cols: its cache columns)."""

    # -- episodes ---------------------------------------------------------------------------
    def open(self, pair: LanguagePair, reads: list[str] | None = None,
             max_source_tokens: int | None = None) -> EpisodeRow:
        """Start an episode whose source will arrive as `reads` (slots size the region from them).

        A live sentence is not known in advance: give `max_source_tokens` instead (slots reserve a
        region for that many source tokens; a read beyond it raises `SourceRegionFullError`).
        """
        if self.record and (self.lookahead or self.write_ahead):
            raise ValueError("transcripts are recorded without look-ahead and write-ahead")
        row = self.row_type(pair)
        row.transcript = Transcript() if self.record else None
        row.next_pos = self._ensure_prefix(pair)
        self._opened(row, reads, max_source_tokens)
        self._add_row(row)
        return row

    def read(self, row: EpisodeRow, chunk: str, last: bool = False) -> None:
        row.n_read += 1
        row.pending += self._read_entries(row, chunk, last)

    def write(self, row: EpisodeRow, segment: str) -> None:
        """Commit the segment written at this step: matching generated tokens stay cached, the rest
        of the model's output is marked dead, and text the model did not produce becomes pending."""
        r = self.rows.index(row)
        want = self._segment_ids(row, segment)
        keep = 0
        while keep < min(len(want), len(row.gen_ids)) and want[keep] == row.gen_ids[keep]:
            keep += 1
        dead = self._commit(row, want, keep)
        if dead:
            self._kill(r, dead)
        row.gen_cols, row.gen_ids = [], []

    def _kill(self, r: int, cols: list[int]) -> None:
        """Row r's entries in `cols` are dead from now on (rolled back, superseded)."""
        self.tags[0, r, cols] = DEAD
        if self.rows[r].transcript is not None:
            self.rows[r].transcript.killed(cols, self._passes)

    def close(self, row: EpisodeRow) -> None:
        self.jobs.pop(row, None)  # an episode dropped mid-step (a live session that went away)
        row.spec = None
        r = self.rows.index(row)
        self.rows.pop(r)
        if not self.rows:
            self.cache, self.tags = None, None
            return
        self._select_rows([i for i in range(len(self.rows) + 1) if i != r])
        self._compact()

    def fork(self, row: EpisodeRow, n: int) -> list[EpisodeRow]:
        """`row` and n-1 copies that share everything run so far (rows of the same cache)."""
        r = self.rows.index(row)
        copies = [copy.deepcopy(row) for _ in range(n - 1)]
        order = list(range(len(self.rows))) + [r] * (n - 1)
        self._select_rows(order)
        self.rows += copies
        return [row] + copies

    def context(self, row: EpisodeRow) -> list[Entry]:
        """The live cache entries of an episode, in cache order: (id, kind, position, vis)."""
        kind, pos, vis, ids = self.tags[:, self.rows.index(row)]
        live = (kind != DEAD).nonzero()[:, 0].tolist()
        return [(int(ids[i]), int(kind[i]), int(pos[i]), int(vis[i])) for i in live]

    # -- steps ------------------------------------------------------------------------------------
    def _step_job(self, row: EpisodeRow, request: Request, ahead: list[Ahead], then: list[tuple[str, bool]],
                  t0: float) -> _StepJob:
        job = self._resume(row, request, then, t0)
        if job is not None:
            return job
        block, points = self._block(row, request, ahead)
        return _StepJob(request, block, points, t0, then=then)

    def advance(self) -> list[tuple[EpisodeRow, list[Completion | None]]]:
        """One forward pass over every started step; returns the steps that finished, each with its
        entries (see `start`). A step that finishes frees its row for the caller's next step at once,
        while longer steps of other episodes go on decoding (continuous batching)."""
        finished = self._decided()
        if not self.jobs:
            return finished
        self._compact()
        blocks: dict[int, list[Entry]] = {}
        need: dict[int, list[int]] = {}
        fresh, decoding, follows = [], [], {}
        for s, job in self.jobs.items():
            r = self.rows.index(s)
            if job.entry is None:
                blocks[r] = job.block
                fresh.append((s, r, job))
                if len(job.points) > 1:
                    need[r] = [p[0] for p in job.points]
            else:
                follow = self._follow(s, job)
                blocks[r] = [job.entry] + follow
                decoding.append((s, r, job))
                if follow:
                    follows[r] = follow
                    need[r] = [0, len(follow)]
        logits, cols, at = self._forward(blocks, need or None)
        picked: dict[int, int] = {}
        logp: dict[int, float | None] = {}
        for s, r, job in fresh:
            if r in need:
                picked[r], logp[r] = self._decide(s, r, job, at[r], cols[r])
            self._started(s, job, cols[r])
        rest = [r for s, r, job in fresh if r not in need]
        if rest:  # one batched pick, as a plain decoding step
            must = [i for i, r in enumerate(rest) if self.jobs[self.rows[r]].request.must_write]
            firsts, lps = self._pick_logp(forbid_line_end(logits[torch.tensor(rest)], must, self.generator.line_end))
            picked.update({r: int(t) for r, t in zip(rest, firsts)})
            logp.update({r: lp for r, lp in zip(rest, lps or [None] * len(rest))})
        if decoding:
            scores = torch.stack([at[r][0] if r in follows else logits[r] for _, r, _ in decoding])
            toks, lps = self._pick_logp(scores)
            for (s, r, job), tok, lp in zip(decoding, toks, lps or [None] * len(decoding)):
                s.gen_cols.append(cols[r][0])
                picked[r], logp[r] = int(tok), lp
        for s, r, job in fresh + decoding:
            tok = picked[r]
            if s.transcript is not None:  # the entry whose logits gave the token: the decision point, or the last token
                col = cols[r][0] if job.entry is not None else cols[r][job.points[job.taken][0]]
                s.transcript.picked(col, tok, logp.get(r), job.entry is None and job.points[job.taken][1].must_write)
            ended = self._next(s, job, tok, logp.get(r))
            if r in follows:
                if ended:  # the next step's start, if what gets written and read makes it the same
                    s.spec = (follows[r], cols[r][1:], at[r][1])
                else:
                    self._kill(r, cols[r][1:])
            if ended:
                finished.append((s, self._finish(s, job)))
        return finished

    # -- the model --------------------------------------------------------------------------------
    def _forward(self, blocks: dict[int, list[Entry]], need: dict[int, list[int]] | None = None):
        """Run each row's new tokens (left-aligned with dead padding so every row's last real token
        sits in the last column); returns last-column logits [B, V], each row's new columns, and
        with `need` (block indices per row) the logits at those tokens ({row: [n, V]}, else None)."""
        B, L = len(self.rows), self.tags.shape[2]
        W = max((len(b) for b in blocks.values()), default=0)
        ids = torch.full((B, W), self.tokenizer.pad_token_id, dtype=torch.long)
        new = torch.zeros((4, B, W), dtype=torch.long)  # DEAD, position 0, vis 0
        cols: dict[int, list[int]] = {}
        self._passes += 1
        for r, block in blocks.items():
            s = self.rows[r]
            off = W - len(block)
            ran = []
            for i, (tok, kind, pos, vis) in enumerate(block):
                if pos < 0:  # append: positions are contiguous over the live transcript
                    pos, s.next_pos = s.next_pos, s.next_pos + 1
                ids[r, off + i] = tok
                new[:, r, off + i] = torch.tensor([kind, pos, vis, tok])
                ran.append((tok, kind, pos, vis))
            cols[r] = list(range(L + off, L + W))
            self._tokens += len(block)
            if s.transcript is not None:
                s.transcript.ran(ran, cols[r], self._passes)
        self.tags = torch.cat([self.tags, new], dim=2)
        kind, pos, vis, _ = self.tags
        q = (kind[:, L:], pos[:, L:], vis[:, L:])
        full = visible(*q, kind, pos, vis)
        diag = torch.arange(W)
        full[:, diag, L + diag] |= kind[:, L:] == DEAD  # padding sees itself: softmax stays defined
        masks = {"full_attention": self._additive(full)}
        if self.window is not None:
            local = visible(*q, kind, pos, vis, window=self.window)
            local[:, diag, L + diag] |= kind[:, L:] == DEAD
            masks["sliding_attention"] = self._additive(local)
        # Logits at several columns per row: the final norm's output is caught on the way to the LM
        # head (`logits_to_keep` takes the same columns for every row, and full-width logits over
        # Gemma-3's 262k vocabulary would cost more than the model), then only the wanted rows of it
        # go through the head.
        caught: list[torch.Tensor] = []
        hook = self._final_norm().register_forward_hook(lambda _m, _i, o: caught.append(o)) if need else None
        try:
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), position_ids=q[1].to(self.device),
                                 attention_mask=layer_masks(self.model, masks), cache=self.cache, use_cache=True, logits_to_keep=1)
        finally:
            if hook is not None:
                hook.remove()
        at = None
        if need:
            hidden = caught[-1]
            at = {}
            for r, idx in need.items():
                off = W - len(blocks[r])
                with torch.inference_mode():
                    at[r] = self._head(hidden[r, [off + i for i in idx]]).float()
        return out.logits[:, -1, :].float(), cols, at

    def _base(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _final_norm(self) -> torch.nn.Module:
        norm = getattr(self._base().get_decoder(), "norm", None)
        if norm is None:
            raise SeqpoError("look-ahead needs a decoder with a final `norm` layer (Llama/Gemma/Qwen style); "
                             "use --lookahead 0 with this model")
        return norm

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head as the model's forward applies it (Gemma-2/3 soft-cap the logits)."""
        logits = self._base().get_output_embeddings()(hidden)
        cfg = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        cap = getattr(cfg, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    # -- the batched cache ----------------------------------------------------------------------
    def _ensure_prefix(self, pair: LanguagePair) -> int:
        if self._prefix is not None:
            if self._prefix[0] != pair:
                raise ValueError("one engine serves one language pair at a time")
            return self._prefix[2]
        ids = self._prefix_ids(pair)
        cache = DynamicCache()  # full layers: the sliding window is applied by our masks
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True,
                       logits_to_keep=1)
        self._tokens += len(ids)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix = (pair, kv, len(ids), ids)
        return len(ids)

    def _add_row(self, row: EpisodeRow) -> None:
        _, kv, P, ids = self._prefix
        if self.cache is None:
            self.cache = DynamicCache()
            for i, (k, v) in enumerate(kv):
                self.cache.update(k.clone(), v.clone(), i)
            self.tags = torch.zeros((4, 1, P), dtype=torch.long)
            self.tags[0, 0], self.tags[1, 0], self.tags[3, 0] = PREFIX, torch.arange(P), torch.tensor(ids)
        else:
            L = self.tags.shape[2]
            for layer, (k, v) in zip(self.cache.layers, kv):
                pad = (0, 0, 0, L - P)
                layer.keys = torch.cat([layer.keys, torch.nn.functional.pad(k, pad)], 0)
                layer.values = torch.cat([layer.values, torch.nn.functional.pad(v, pad)], 0)
            new = torch.zeros((4, 1, L), dtype=torch.long)
            new[0, 0, :P], new[1, 0, :P], new[3, 0, :P] = PREFIX, torch.arange(P), torch.tensor(ids)
            self.tags = torch.cat([self.tags, new], 1)
        if row.transcript is not None:
            row.transcript.ran([(t, PREFIX, i, 0) for i, t in enumerate(ids)], list(range(P)), 0)
        self.rows.append(row)

    def _select_rows(self, order: list[int]) -> None:
        idx = torch.tensor(order)
        self.cache.batch_select_indices(idx.to(self.device))
        self.tags = self.tags[:, idx]

    def _compact(self) -> None:
        """Drop cache columns dead in every row (finished episodes, rolled-back tokens, padding);
        the columns that running steps remember move with them."""
        if self.tags is None:
            return
        keep = (self.tags[0] != DEAD).any(0)
        if bool(keep.all()):
            return
        idx = keep.nonzero()[:, 0]
        moved = (torch.cumsum(keep, 0) - 1).tolist()
        for row in self.rows:
            row.move_columns(moved)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(2, idx.to(layer.keys.device))
            layer.values = layer.values.index_select(2, idx.to(layer.values.device))
        self.tags = self.tags[:, :, idx]
