"""One streaming decoding engine, four modes: re-encode, cached re-encode, append (conversational)
and slots (ExPosST zero-recompute caching, MISSION.md sec. 2).

- `reencode`: each step's request (cached few-shot prefix + the whole step prompt) goes to
  `Generator.complete`, as the policies build it. The baseline and reference output.
- `cached`: the same prompts and the same computation as `reencode`, with prefix caching: a step
  runs only what its prompt does not share with the episode's previous one, all episodes packed
  into one sequence (`seqpo.packed_engine.PackedCachedEngine`, which `StreamingEngine(mode="cached")`
  constructs).
- `append`: one running transcript per episode (`prompts.conversation_*`): each read appends
  `English: chunk\\nGerman:`, each step appends ` segment\\n` (or `\\n` for a wait). The cache is only
  extended, so a step runs only its new tokens; the result equals re-encoding the transcript.
- `slots`: the SeqPO line format with the source at reserved positions (`seqpo.slots`): target
  positions never move when more source arrives, source tokens never see the target, and
  visibility comes from per-token tags through an explicit attention mask.

In append/slots mode the engine owns the per-episode state: the driver calls `open` (a
`StreamState`), `read` each source chunk, `generate` for the steps that need the model, `write`
each step's segment ("" for a wait), `close`. All open episodes share one batched cache; rows of
different lengths are aligned with *dead* entries (padding inside the cache, masked for every
query), so every model call still batches all episodes. Positions and masks are explicit, which is
why this is a hand loop and not `generate`: `generate` derives positions from the 2D mask and
applies Gemma-3's sliding window by cache index, so dead entries would shift both, and it cannot
change per-row masks per step the way slots need. Generated tokens the policy does not keep are
marked dead rather than cropped, so one row's rollback never touches the others.

`fork(state, n)` copies one episode's row n times (GRPO groups): the few-shot prefix and the
source read so far are shared, not recomputed.

Steps are continuously batched: `start` begins an episode's step, `advance` runs one forward
pass over every running step (new blocks next to decode tokens) and returns the steps that ended,
so an episode never waits for the longest step of the batch; `generate` = start + advance.

One pass per read is what keeps streaming slower than offline decoding. When later reads are
already known (files, eval, rollouts), two exact shortcuts decide reads early in wider passes:
look-ahead (`lookahead` reads placed as if the reads before them waited; a run of waits costs one
pass) and write-ahead (the next read runs while a segment decodes, placed as if the line ended
after the token being run; reused only if what was written and read is exactly that).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from .errors import SeqpoError
from .generation import Completion, Generator, Request, forbid_line_end, stop_reached
from .languages import LanguagePair
from .prompts import conversation_prefix, conversation_read, conversation_write, slots_separator
from .slots import DEAD, PREFIX, SOURCE, TARGET, additive, layer_masks, prefix_ids, region_size, sliding_window, \
    source_piece_ids, target_piece_ids, visible

MODES = ("reencode", "cached", "append", "slots")
CHAT_MODES = ("reencode", "cached")  # modes whose prompts can sit in a chat template (`prompts.ChatFormat`)


class SourceRegionFullError(SeqpoError):
    """More source tokens arrived than the slots region reserved for the sentence."""


@dataclass(eq=False)  # a handle: two episodes in the same state are still two rows
class StreamState:
    """One episode's handle. Token tuples are (id, kind, position, vis); see `seqpo.slots`."""

    pair: LanguagePair
    n_read: int = 0
    pending: list[tuple[int, int, int, int]] = field(default_factory=list)  # not yet run
    next_pos: int = 0  # append: next transcript position; slots: next source position
    region_end: int = 0  # slots: first target position
    last: tuple[int, int] | None = None  # slots: (id, position) of the target's last token, re-fed
    wrote: bool = False  # slots: a target segment was written
    gen_cols: list[int] = field(default_factory=list)  # cache columns of this step's generated tokens
    gen_ids: list[int] = field(default_factory=list)
    refed_col: int | None = None  # slots: cache column of this step's re-fed last token
    spec: tuple | None = None  # write-ahead: (entries, cache columns, logits) of the next step's start


@dataclass
class Ahead:
    """A later read the engine may take in the same forward pass as the current one, in case every
    read before it waits (look-ahead; the source must already be known, as in eval and rollouts)."""

    chunk: str
    last: bool
    request: Request | None  # None: the policy waits there without asking the model


@dataclass(eq=False)
class _Job:
    """A started model step of one episode."""

    request: Request
    block: list[tuple[int, int, int, int]]  # tokens the step starts with (pending + look-ahead reads)
    points: list[tuple[int, Request, int, int]]  # decisions: block index, request, reads ahead, source end
    t0: float
    taken: int = 0  # the point decoded from
    waits: list[int] = field(default_factory=list)  # first tokens of the points taken as waits
    ids: list[int] = field(default_factory=list)  # generated so far
    entry: tuple[int, int, int, int] | None = None  # the token to run next (None: the block is not run yet)
    decided: torch.Tensor | None = None  # logits of the first token, computed by write-ahead
    then: list[tuple[str, bool]] = field(default_factory=list)  # write-ahead: the reads after the current one
    logps: list[float] = field(default_factory=list)  # sampling: log-prob of each generated token
    prompt: list[int] | None = None  # cached: the step's whole prompt ids


class StreamingEngine:
    """Continue episodes in one of `MODES`; the interface is the same for all of them."""

    def __new__(cls, *args, **kwargs):
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "reencode")
        if cls is StreamingEngine and mode == "cached":
            from .packed_engine import PackedCachedEngine  # a subclass: imported here, not at module level

            return super().__new__(PackedCachedEngine)
        return super().__new__(cls)

    def __init__(self, model, tokenizer, mode: str = "reencode", slot: int = 16, batch_size: int = 8,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 few_shot: bool = True, lookahead: int = 0, write_ahead: bool = False, chat=None):
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode '{mode}' (choose from {', '.join(MODES)})")
        if chat is not None and mode not in CHAT_MODES:
            raise ValueError(f"{mode} decoding has its own prompt format: no chat template")
        self.model, self.tokenizer, self.mode, self.slot = model, tokenizer, mode, slot
        self.few_shot = few_shot
        incremental = mode in ("append", "slots")  # early decisions need reads the cache can run ahead
        self.lookahead = lookahead if incremental else 0  # reads taken ahead per forward pass
        self.write_ahead = write_ahead and incremental  # run the next read while a segment decodes
        self.do_sample = do_sample
        self.generator = Generator(model, tokenizer, batch_size, do_sample, temperature, top_p, chat)
        warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
        self.warpers = LogitsProcessorList(warpers)
        self.window = sliding_window(model)
        self._newline_ids = self._ids(conversation_write(""))  # append: a line's end in the transcript (all a wait adds)
        self.rows: list[StreamState] = []
        self.jobs: dict[StreamState, _Job] = {}  # started steps, in start order
        self.cache: DynamicCache | None = None
        self.tags: torch.Tensor | None = None  # [4, B, L]: kind, position, vis, token id per entry
        self._prefix: tuple | None = None  # (pair, per-layer (keys, values), length, ids)
        self._tokens = 0

    @classmethod
    def reencoding(cls, generator: Generator) -> "StreamingEngine":
        """The re-encode mode over an existing Generator (its prefix cache and settings)."""
        engine = cls(generator.model, generator.tokenizer, "reencode", batch_size=generator.batch_size,
                     do_sample=generator.do_sample, temperature=generator.temperature, top_p=generator.top_p)
        engine.generator = generator
        return engine

    @property
    def tokens_processed(self) -> int:
        """Tokens run through the model (prompt + generated), dead padding not counted."""
        return self._tokens + self.generator.tokens_processed

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def _read_ids(self, pair: LanguagePair, chunk: str, last: bool, first: bool = False) -> list[int]:
        """A read's tokens: append, its turn (`English: chunk\nGerman:`); slots, its source piece."""
        if self.mode == "append":
            return self._ids(conversation_read(pair, chunk, last))
        return source_piece_ids(self.tokenizer, pair, [chunk] if first else ["", chunk])[-1]

    # -- episodes ---------------------------------------------------------------------------
    def open(self, pair: LanguagePair, reads: list[str] | None = None,
             max_source_tokens: int | None = None) -> StreamState:
        """Start an episode whose source will arrive as `reads` (slots size the region from them).

        A live sentence is not known in advance: give `max_source_tokens` instead (slots reserve a
        region for that many source tokens; a read beyond it raises `SourceRegionFullError`).
        """
        state = StreamState(pair)
        if self.mode == "reencode":
            return state
        if self.mode == "slots" and (reads is None) == (max_source_tokens is None):
            raise ValueError("slots decoding opens an episode with either its reads or max_source_tokens")
        P = self._ensure_prefix(pair)
        state.next_pos = P
        if self.mode == "slots":
            n_src = max_source_tokens if reads is None else \
                sum(len(p) for p in source_piece_ids(self.tokenizer, pair, reads))
            state.region_end = P + region_size(n_src, self.slot)
            line = self._ids(slots_separator(pair))
            state.pending = [(t, TARGET, state.region_end + i, 1) for i, t in enumerate(line[:-1])]
            state.last = (line[-1], state.region_end + len(line) - 1)
        self._add_row(state)
        return state

    def read(self, state: StreamState, chunk: str, last: bool = False) -> None:
        if self.mode == "reencode":
            return
        state.n_read += 1
        piece = self._read_ids(state.pair, chunk, last, first=state.n_read == 1)
        if self.mode == "append":
            state.pending += [(t, PREFIX, -1, 0) for t in piece]
            return
        if state.next_pos + len(piece) > state.region_end:
            raise SourceRegionFullError("source longer than its reserved slots region")
        state.pending += [(t, SOURCE, state.next_pos + i, state.n_read) for i, t in enumerate(piece)]
        state.next_pos += len(piece)

    def write(self, state: StreamState, segment: str) -> None:
        """Commit the segment written at this step: matching generated tokens stay cached, the rest
        of the model's output is marked dead, and text the model did not produce becomes pending."""
        if self.mode == "reencode":
            return
        row = self.rows.index(state)
        if self.mode == "append":
            want = self._ids(conversation_write(segment))
        else:
            want = target_piece_ids(self.tokenizer, state.pair, segment, first=not state.wrote)
            state.wrote = state.wrote or bool(want)
        keep = 0
        while keep < min(len(want), len(state.gen_ids)) and want[keep] == state.gen_ids[keep]:
            keep += 1
        if self.mode == "slots" and want and keep == len(want):
            keep -= 1  # the new last token is re-fed at the next step, seeing the next read
        dead = state.gen_cols[keep:]
        if self.mode == "slots" and not want and state.refed_col is not None:
            dead.append(state.refed_col)  # a wait: the re-fed copy is superseded by the next one
        if dead:
            self.tags[0, row, dead] = DEAD
        if self.mode == "append":
            state.next_pos -= len(state.gen_ids) - keep
            state.pending += [(t, PREFIX, -1, 0) for t in want[keep:]]
        elif want:
            if state.refed_col is None:  # the step ran no model: the old last token is still pending
                state.pending.append((state.last[0], TARGET, state.last[1], state.n_read))
            base = state.last[1] + 1
            state.pending += [(t, TARGET, base + i, state.n_read) for i, t in enumerate(want[keep:-1], keep)]
            state.last = (want[-1], base + len(want) - 1)
        state.gen_cols, state.gen_ids, state.refed_col = [], [], None

    def close(self, state: StreamState) -> None:
        self.jobs.pop(state, None)  # an episode dropped mid-step (a live session that went away)
        state.spec = None
        if self.mode == "reencode":
            return
        row = self.rows.index(state)
        self.rows.pop(row)
        if not self.rows:
            self.cache, self.tags = None, None
            return
        self._select_rows([i for i in range(len(self.rows) + 1) if i != row])
        self._compact()

    def fork(self, state: StreamState, n: int) -> list[StreamState]:
        """`state` and n-1 copies that share everything run so far (rows of the same cache)."""
        if self.mode == "reencode":
            return [state] + [copy.deepcopy(state) for _ in range(n - 1)]
        row = self.rows.index(state)
        copies = [copy.deepcopy(state) for _ in range(n - 1)]
        order = list(range(len(self.rows))) + [row] * (n - 1)
        self._select_rows(order)
        self.rows += copies
        return [state] + copies

    def context(self, state: StreamState) -> list[tuple[int, int, int, int]]:
        """The live cache entries of an episode, in cache order: (id, kind, position, vis)."""
        kind, pos, vis, ids = self.tags[:, self.rows.index(state)]
        live = (kind != DEAD).nonzero()[:, 0].tolist()
        return [(int(ids[i]), int(kind[i]), int(pos[i]), int(vis[i])) for i in live]

    # -- the model ----------------------------------------------------------------------------
    def generate(self, states: list[StreamState], requests: list[Request],
                 ahead: list[list[Ahead]] | None = None) -> list[Completion] | list[list[Completion | None]]:
        """Run one step for each state to its end (`start` each, then `advance` until all are done).

        Without `ahead`: one Completion per state. With `ahead` (see `start`): per state, one entry
        per read the engine took.
        """
        for s, q, later in zip(states, requests, ahead or [[] for _ in states]):
            self.start(s, q, later)
        done: dict[int, list[Completion | None]] = {}
        while len(done) < len(states):
            for s, entries in self.advance():
                done[id(s)] = entries
        return [done[id(s)] if ahead is not None else done[id(s)][-1] for s in states]

    def start(self, state: StreamState, request: Request, ahead: list[Ahead] | None = None,
              then: list[tuple[str, bool]] | None = None) -> None:
        """Begin a model step for `state`; it runs in the next `advance` calls, batched with the
        steps of every other started episode, whatever point those have reached.

        Look-ahead (`ahead`, later reads; append and slots): each later read rides along in the same
        forward pass, placed as if every read before it had waited, so the decisions of several reads
        come out of one pass. The engine takes reads up to the first whose first token does not end
        the line (or the last), and decodes that one in full. The step's result has one entry per
        read taken: its Completion, None where the policy waited without the model. Reads taken as
        waits are read and written here; the caller writes only the last entry. The result is what
        stepping read by read gives: a decision only depends on the tokens before it (causal masks),
        the same either way; tokens after the read taken last are marked dead.

        Write-ahead (`then`: the reads after this step's, as (chunk, last); needs `write_ahead`):
        while the step decodes, each pass also runs the next read placed as if the line ended after
        the token being run, so when it does end, the next step's decision is already computed. The
        next `start` uses it only if its tokens are exactly what `write` and `read` left pending;
        otherwise those cache entries are marked dead.
        """
        if state in self.jobs:
            raise RuntimeError("this episode already has a step running")
        t0 = time.perf_counter()
        if self.mode == "reencode":
            self.jobs[state] = _Job(request, [], [(0, request, 0, 0)], t0)
            return
        spec, state.spec = state.spec, None
        if spec is not None:
            base = list(state.pending)
            if self.mode == "slots":
                base.append((state.last[0], TARGET, state.last[1], state.n_read))
            if self._matches(state, base, spec[0]):
                state.pending = []
                if self.mode == "append":
                    state.next_pos += len(base)
                else:
                    state.refed_col = spec[1][-1]
                self.jobs[state] = _Job(request, [], [(len(base) - 1, request, 0, state.next_pos)], t0,
                                        decided=spec[2], then=then or [])
                return
            self.tags[0, self.rows.index(state), spec[1]] = DEAD
        block, points = self._block(state, request, ahead or [])
        self.jobs[state] = _Job(request, block, points, t0, then=then or [])

    def _matches(self, state: StreamState, base: list, spec: list) -> bool:
        """The tokens a step starts with are the ones write-ahead ran (append: same ids and kinds in
        the next transcript positions; slots: same ids, kinds, positions and reads seen)."""
        if len(base) != len(spec):
            return False
        if self.mode == "append":
            return all(b[:2] == s[:2] and s[2] == state.next_pos + i for i, (b, s) in enumerate(zip(base, spec)))
        return base == spec

    def _follow(self, s: StreamState, job: "_Job") -> list[tuple[int, int, int, int]]:
        """The next read as it would follow if the line ended after the token run now (see `start`)."""
        after = job.points[job.taken][2]  # reads taken ahead: the next read comes after them
        if not self.write_ahead or after >= len(job.then):
            return []
        piece = self._read_ids(s.pair, *job.then[after])
        if self.mode == "append":
            ids = self._newline_ids + piece
            return [(t, PREFIX, s.next_pos + 1 + i, 0) for i, t in enumerate(ids)]
        if s.next_pos + len(piece) > s.region_end:
            return []
        vis = s.n_read + 1
        return [(t, SOURCE, s.next_pos + i, vis) for i, t in enumerate(piece)] + \
               [(job.entry[0], TARGET, job.entry[2], vis)]

    @property
    def busy(self) -> bool:
        """Some started step has not finished yet."""
        return bool(self.jobs)

    def advance(self) -> list[tuple[StreamState, list[Completion | None]]]:
        """One forward pass over every started step (re-encode: one `Generator.complete` call, each
        request decoded in full); returns the steps that finished, each with its entries (see
        `start`). A step that finishes frees its row for the caller's next step at once, while
        longer steps of other episodes go on decoding (continuous batching)."""
        if self.mode == "reencode":
            jobs, self.jobs = self.jobs, {}
            done = self.generator.complete([job.request for job in jobs.values()])
            return [(s, [c]) for s, c in zip(jobs, done)]
        finished = []
        for s, job in list(self.jobs.items()):  # steps whose first token write-ahead already computed
            if job.decided is not None:
                (tok, lp), job.decided = self._first_token(job.decided, job.request), None
                if self._next(s, job, tok, lp):
                    finished.append((s, self._finish(s, job)))
        if not self.jobs:
            return finished
        self._compact()
        blocks: dict[int, list[tuple[int, int, int, int]]] = {}
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
            if r in need:  # look-ahead: take the decisions in order, up to the first that writes
                for j, (_, req, _, _) in enumerate(job.points):
                    tok, logp[r] = self._first_token(at[r][j], req)
                    if j == len(job.points) - 1 or tok not in self.generator.line_end or not req.stop_at_newline:
                        break
                    job.waits.append(tok)
                job.taken = j
                self._take(s, r, job.block, job.points, j, cols[r])
                picked[r] = tok
            if self.mode == "slots":
                s.refed_col = cols[r][job.points[job.taken][0]]
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
            ended = self._next(s, job, tok, logp.get(r))
            if r in follows:
                if ended:  # the next step's start, if what gets written and read makes it the same
                    s.spec = (follows[r], cols[r][1:], at[r][1])
                else:
                    self.tags[0, r, cols[r][1:]] = DEAD
            if ended:
                finished.append((s, self._finish(s, job)))
        return finished

    def _next(self, s: StreamState, job: "_Job", tok: int, logp: float | None = None) -> bool:
        """Record a generated token; True if the step ends with it (else it runs at the next pass)."""
        job.ids.append(tok)
        if logp is not None:
            job.logps.append(logp)
        text = self.tokenizer.decode(job.ids, skip_special_tokens=True)
        if tok == self.tokenizer.eos_token_id or stop_reached(text, len(job.ids), job.points[job.taken][1]):
            return True
        if self.mode == "append":
            job.entry = (tok, PREFIX, -1, 0)
        elif self.mode == "cached":
            job.entry = (tok, PREFIX, len(job.prompt) + len(job.ids) - 1, 0)
        else:
            job.entry = (tok, TARGET, s.last[1] + len(job.ids), s.n_read)
        return False

    def _finish(self, s: StreamState, job: "_Job") -> list[Completion | None]:
        """A step's entries, one per read taken; the token that ended it was not run (it comes back
        as pending when the written segment keeps it)."""
        del self.jobs[s]
        eos = self.tokenizer.eos_token_id
        text = self.tokenizer.decode(job.ids, skip_special_tokens=True)
        s.gen_ids = job.ids[: len(s.gen_cols)]
        elapsed = (time.perf_counter() - job.t0) * 1000
        last = Completion(text.split("\n")[0], len(job.ids), elapsed, "\n" in text or eos in job.ids, job.ids,
                          prompt_ids=job.prompt, logprobs=job.logps if len(job.logps) == len(job.ids) else None)
        entries: list[Completion | None] = []
        waits = iter(job.waits)
        by_read = {p[2]: j for j, p in enumerate(job.points[: job.taken + 1])}
        for k in range(job.points[job.taken][2] + 1):
            if k not in by_read:
                entries.append(None)  # the policy waited there without the model
            elif by_read[k] == job.taken:
                entries.append(last)
            else:
                entries.append(Completion("", 1, 0.0, True, [next(waits)]))
        return entries

    def _block(self, s: StreamState, req: Request, later: list[Ahead]):
        """A row's tokens for this step: its pending tokens (+ the re-fed last target token in slots),
        then each later read as it would follow waits. Returns the block and its decision points."""
        block, s.pending = list(s.pending), []
        if self.mode == "slots":
            block.append((s.last[0], TARGET, s.last[1], s.n_read))
        src = s.next_pos
        points = [(len(block) - 1, req, 0, src)]
        for k, a in enumerate(later, 1):
            vis = s.n_read + k
            piece = self._read_ids(s.pair, a.chunk, a.last)
            if self.mode == "append":
                block += [(t, PREFIX, -1, 0) for t in self._newline_ids + piece]
            else:
                if src + len(piece) > s.region_end:
                    raise SourceRegionFullError("source longer than its reserved slots region")
                block += [(t, SOURCE, src + i, vis) for i, t in enumerate(piece)]
                src += len(piece)
                if a.request is not None:
                    block.append((s.last[0], TARGET, s.last[1], vis))
            if a.request is not None:
                points.append((len(block) - 1, a.request, k, src))
        return block, points

    def _take(self, s: StreamState, row: int, block: list, points: list, j: int, cols: list[int]) -> None:
        """Keep a row's block up to decision point j: later tokens and (slots) the re-fed copies of
        the reads that waited become dead; the reads up to j count as read."""
        end, _, k, src = points[j]
        dead = cols[end + 1:]
        if self.mode == "slots":
            dead += [cols[p[0]] for p in points[:j]]
            s.next_pos = src
        else:
            s.next_pos -= len(block) - end - 1  # positions were handed out for the whole block
        if dead:
            self.tags[0, row, dead] = DEAD
        s.n_read += k

    def _first_token(self, logits: torch.Tensor, req: Request) -> tuple[int, float | None]:
        """A step's first token from one row of logits [V], under the request's must_write (and
        its log-prob when sampling)."""
        scores = forbid_line_end(logits[None], [0] if req.must_write else [], self.generator.line_end)
        tok, logp = self._pick_logp(scores)
        return int(tok[0]), logp[0] if logp else None

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        return self._pick_logp(logits)[0]

    def _pick_logp(self, logits: torch.Tensor) -> tuple[torch.Tensor, list[float] | None]:
        """Next tokens from rows of scores [B, V]; when sampling, also each token's log-prob under
        the distribution it was drawn from (temperature/top-p applied: what a rollout's update
        compares against)."""
        if not self.do_sample:
            return logits.argmax(-1), None
        logp = torch.log_softmax(self.warpers(None, logits.float()), -1)
        picked = torch.multinomial(logp.exp(), 1)[:, 0]
        return picked, logp.gather(1, picked[:, None])[:, 0].tolist()

    def _forward(self, blocks: dict[int, list[tuple[int, int, int, int]]], need: dict[int, list[int]] | None = None):
        """Run each row's new tokens (left-aligned with dead padding so every row's last real token
        sits in the last column); returns last-column logits [B, V], each row's new columns, and
        with `need` (block indices per row) the logits at those tokens ({row: [n, V]}, else None)."""
        B, L = len(self.rows), self.tags.shape[2]
        W = max((len(b) for b in blocks.values()), default=0)
        ids = torch.full((B, W), self.tokenizer.pad_token_id, dtype=torch.long)
        new = torch.zeros((4, B, W), dtype=torch.long)  # DEAD, position 0, vis 0
        cols: dict[int, list[int]] = {}
        for r, block in blocks.items():
            s = self.rows[r]
            off = W - len(block)
            for i, (tok, kind, pos, vis) in enumerate(block):
                if pos < 0:  # append: positions are contiguous over the live transcript
                    pos, s.next_pos = s.next_pos, s.next_pos + 1
                ids[r, off + i] = tok
                new[:, r, off + i] = torch.tensor([kind, pos, vis, tok])
            cols[r] = list(range(L + off, L + W))
            self._tokens += len(block)
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

    def _additive(self, ok: torch.Tensor) -> torch.Tensor:
        return additive(ok, next(self.model.parameters()).dtype).to(self.device)

    # -- the batched cache ----------------------------------------------------------------------
    def _ensure_prefix(self, pair: LanguagePair) -> int:
        if self._prefix is not None:
            if self._prefix[0] != pair:
                raise ValueError("one engine serves one language pair at a time")
            return self._prefix[2]
        if self.mode == "append":
            ids = self.tokenizer((conversation_prefix(pair) if self.few_shot else "")).input_ids
        else:
            ids = prefix_ids(self.tokenizer, pair, self.few_shot)
        cache = DynamicCache()  # full layers: the sliding window is applied by our masks
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True,
                       logits_to_keep=1)
        self._tokens += len(ids)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix = (pair, kv, len(ids), ids)
        return len(ids)

    def _add_row(self, state: StreamState) -> None:
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
            row = torch.zeros((4, 1, L), dtype=torch.long)
            row[0, 0, :P], row[1, 0, :P], row[3, 0, :P] = PREFIX, torch.arange(P), torch.tensor(ids)
            self.tags = torch.cat([self.tags, row], 1)
        self.rows.append(state)

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
        for s in self.rows:
            s.gen_cols = [moved[c] for c in s.gen_cols]
            s.refed_col = None if s.refed_col is None else moved[s.refed_col]
            if s.spec is not None:
                s.spec = (s.spec[0], [moved[c] for c in s.spec[1]], s.spec[2])
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(2, idx.to(layer.keys.device))
            layer.values = layer.values.index_select(2, idx.to(layer.values.device))
        self.tags = self.tags[:, :, idx]


def make_engine(loaded, mode: str = "reencode", slot: int = 16, batch_size: int = 8, few_shot: bool = True,
                lookahead: int = 0, write_ahead: bool = False, **sampling) -> StreamingEngine:
    """An engine on a loaded model; its chat format (`LoadedModel.chat`) applies in the modes that
    re-encode the SeqPO prompt (append and slots have their own formats)."""
    chat = loaded.chat if mode in CHAT_MODES else None
    return StreamingEngine(loaded.model, loaded.tokenizer, mode=mode, slot=slot, batch_size=batch_size,
                           few_shot=few_shot, lookahead=lookahead, write_ahead=write_ahead, chat=chat, **sampling)
