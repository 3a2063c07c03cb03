"""Live sentences on the streaming engine (append/slots decoding of `seqpo serve` and speech input).

`simulate.run_episodes` knows every sentence in advance; a live sentence (`driver.EpisodeRun`)
arrives piece by piece and many of them, of several pairs and adapters, share one model. Here each
live sentence is one engine episode, driven with the calls `run_episodes` makes: `open` at its first
read, `read` per consumed chunk, `generate` for the steps that ask the model, `write` of every
step's segment ("" for a wait), `close` when the sentence is done or dropped. Its row (`LiveRow`)
is owned by the model thread.

`EngineSet` holds one engine per (pair, adapter, few-shot) it meets, created on first use (an
engine serves one pair and runs on the weights its prefix cache was computed with); the adapter is
made active around that engine's model calls with `Generator.on_adapter`. Every engine call must
happen on one thread (the server's model thread): `read`, `write` and `release` only queue on the
row (any thread), and `EngineSet.flush` applies every row's queue there, in order, before each
model call. A wait therefore costs no trip to the model thread, and every written segment is in its
row before the next forward pass, so the engine can drop dead cache columns
(`RowCacheEngine._compact`). Its `complete(requests, rows)` (one thread that runs everything
itself) and the server's `worker.WorkerClient` (a session's side of the model worker) are what a
`model_steps.CompleterSteps` steps live sentences on.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from .engine import EpisodeRow, SourceRegionFullError, engine_class, engine_for
from .generation import completer_for
from .languages import LanguagePair
from .model_steps import ModelSteps
from .requests import Completion, Request

# Slots decoding reserves a live sentence's source region before its text is known, from the
# session's limit in source units. Gemma-3's tokenizer takes about 1.3 tokens per English or
# German word (`line_piece` spaces included) and at most one per Chinese/Japanese character; 4 per
# unit leaves room for names, numbers and rare words. The reserve costs positions, not compute:
# unfilled slots hold no token.
TOKENS_PER_UNIT = 4


def source_token_budget(max_units: int) -> int:
    """Source tokens a slots region reserves for a live sentence of at most `max_units` units."""
    return max_units * TOKENS_PER_UNIT


@dataclass(eq=False)  # a handle: two sentences in the same state are still two rows
class LiveRow:
    """The row of one live sentence, owned by the model thread: `EngineSet.read` / `write` /
    `release` queue its calls (any thread) and `EngineSet.flush` applies them there; `error` is set
    there when a read overflows the slots region (the episode is closed then, and its later calls
    are ignored)."""

    pair: LanguagePair
    adapter: str | None
    few_shot: bool
    max_source_tokens: int | None
    todo: deque[tuple] = field(default_factory=deque)  # ("read", chunk, last) | ("write", segment) | ("close",)
    state: EpisodeRow | None = None  # the engine's row, once the first read is applied
    error: SourceRegionFullError | None = None
    closed: bool = False  # on the model thread: close applied (or failed)

    @property
    def key(self) -> tuple[LanguagePair, str | None, bool]:
        return self.pair, self.adapter, self.few_shot


class EngineSet:
    """Streaming engines of one mode over one model, one per (pair, adapter, few-shot), and the
    live rows on them. `complete` has a Generator's shape, plus the rows the requests are for."""

    def __init__(self, model, tokenizer, mode: str, slot: int = 16, chat=None):
        self.engine_type = engine_class(mode)
        if not self.engine_type.keeps_cache:
            raise ValueError(f"live engines run append or slots decoding, not '{mode}'")
        self.model, self.tokenizer, self.mode, self.slot = model, tokenizer, mode, slot
        self.chat = chat if self.engine_type.takes_chat_template else None  # `LoadedModel.chat`, of cached prompts
        self.engines: dict[tuple, ModelSteps] = {}
        self._rows: list[LiveRow] = []
        self._lock = threading.Lock()  # rows open on any thread; flush reads the list on the model thread

    def open_row(self, pair: LanguagePair, adapter: str | None = None, few_shot: bool = True,
                 max_units: int | None = None) -> LiveRow:
        """A new live sentence (any thread). Slots need `max_units`, the sentence's limit in source units."""
        if self.engine_type.reserves_source and max_units is None:
            raise ValueError("slots decoding of a live sentence needs its maximum length (max_units)")
        row = LiveRow(pair, adapter, few_shot, source_token_budget(max_units) if max_units else None)
        with self._lock:
            self._rows.append(row)
        return row

    def read(self, row: LiveRow, chunk: str, last: bool = False) -> None:
        """The sentence read `chunk` (any thread): queued for the next `flush`."""
        row.todo.append(("read", chunk, last))

    def write(self, row: LiveRow, segment: str) -> None:
        """The sentence's step wrote `segment` (any thread): queued for the next `flush`."""
        row.todo.append(("write", segment))

    def release(self, row: LiveRow) -> None:
        """The sentence is done or dropped (any thread): its row is freed at the next `flush` (every
        model call starts with one, so a released row never costs compute)."""
        row.todo.append(("close",))

    @property
    def open_rows(self) -> int:
        with self._lock:
            return len(self._rows)

    # -- on the model thread ----------------------------------------------------------------------
    def engine(self, row: LiveRow) -> ModelSteps:
        key = row.key
        if key not in self.engines:
            self.engines[key] = engine_for(self.model, self.tokenizer, self.mode, self.slot,
                                           few_shot=row.few_shot, chat=self.chat)
        return self.engines[key]

    def flush(self) -> None:
        """Apply every row's queued calls, in order."""
        with self._lock:
            rows = list(self._rows)
        for row in rows:
            self._apply(row)

    def _apply(self, row: LiveRow) -> None:
        while row.todo:
            op = row.todo.popleft()
            if row.closed:
                continue
            if op[0] == "close":
                self._close(row)
                continue
            engine = self.engine(row)
            if op[0] == "read":
                if row.state is None:  # the prefix cache is computed at the first open: on the adapter
                    with engine.generator.on_adapter(row.adapter):
                        row.state = engine.open(row.pair, max_source_tokens=row.max_source_tokens)
                try:
                    engine.read(row.state, op[1], last=op[2])
                except SourceRegionFullError as exc:
                    row.error = exc
                    self._close(row)
            else:
                engine.write(row.state, op[1])

    def _close(self, row: LiveRow) -> None:
        if row.state is not None:
            self.engine(row).close(row.state)
        row.state, row.closed = None, True
        with self._lock:
            self._rows.remove(row)

    def complete_each(self, requests: list[Request], rows: list[LiveRow]) -> list[Completion | Exception]:
        """Flush, then one `generate` per engine for its rows' requests (each on its adapter); a
        row whose read overflowed its region gets its `SourceRegionFullError` instead."""
        self.flush()
        out: list[Completion | Exception | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            if (error := self._unready(row)) is not None:
                out[i] = error
            else:
                groups.setdefault(row.key, []).append(i)
        for key, indices in groups.items():
            engine = self.engines[key]
            with engine.generator.on_adapter(key[1]):
                done = engine.generate([rows[i].state for i in indices], [requests[i] for i in indices])
            for i, completion in zip(indices, done):
                out[i] = completion
        return out  # type: ignore[return-value]

    # -- continuous batching (the server's worker) -------------------------------------------------
    def start_each(self, requests: list[Request], rows: list[LiveRow]) -> list[Exception | None]:
        """Flush, then start each row's step on its engine (`ModelSteps.start`); the steps
        run in the following `advance` calls. Returns an error for a row that cannot start."""
        self.flush()
        errors = [self._unready(row) for row in rows]
        for request, row, error in zip(requests, rows, errors):
            if error is None:
                self.engine(row).start(row.state, request)
        return errors

    @staticmethod
    def _unready(row: LiveRow) -> Exception | None:
        """Why a flushed row cannot take a model step (None: it can)."""
        if row.error is not None:
            return row.error
        if row.state is None:
            return RuntimeError("model step for a live sentence that is closed or has read nothing")
        return None

    @property
    def busy(self) -> bool:
        return any(engine.busy for engine in self.engines.values())

    def advance(self) -> list[tuple[LiveRow, Completion]]:
        """One forward pass on every engine with running steps (each on its adapter), right after
        `start_each` (whose flush has stopped the steps of dropped sentences); returns the rows
        whose step ended, with its completion."""
        with self._lock:
            by_state = {id(s.state): s for s in self._rows if s.state is not None}
        done = []
        for key, engine in self.engines.items():
            if engine.busy:
                with engine.generator.on_adapter(key[1]):
                    for state, entries in engine.advance():
                        done.append((by_state[id(state)], entries[-1]))
        return done

    def abort(self) -> None:
        """Forget every running step (after a failed model call)."""
        for engine in self.engines.values():
            engine.jobs.clear()

    def complete(self, requests: list[Request], rows: list[LiveRow]) -> list[Completion]:
        """`complete_each` for one thread that runs everything itself (`seqpo translate --audio`)."""
        out = self.complete_each(requests, rows)
        for item in out:
            if isinstance(item, Exception):
                raise item
        return out  # type: ignore[return-value]


def live_completer(loaded, decoding: str, slot: int = 16):
    """What runs the model steps of live sentences (one at a time) on a loaded model: re-encode
    runs each step's prompt on a `Generator`; the other modes keep each sentence's cache in an
    engine episode of an `EngineSet` (`open_row` per sentence). A model with a completer of its
    own (llama.cpp, which keeps the last prompt's cache itself) runs every mode it takes there."""
    completer = completer_for(loaded.model, loaded.tokenizer, batch_size=1, chat=loaded.chat)
    if engine_class(decoding).keeps_cache and not uses_own_cache(completer):
        return EngineSet(loaded.model, loaded.tokenizer, decoding, slot, chat=loaded.chat)
    return completer


def uses_own_cache(completer) -> bool:
    """The completer reuses its prompts' cached prefixes itself (llama.cpp): no engine episodes."""
    return bool(getattr(completer, "caches_prefix", False))


__all__ = ["EngineSet", "LiveRow", "TOKENS_PER_UNIT", "live_completer", "source_token_budget", "uses_own_cache"]
