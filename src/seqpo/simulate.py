"""Stream sources through a policy, many episodes in lockstep so model calls are batched.

Every active episode advances until its policy needs the model (reads where it waits without
the model cost nothing), then all pending requests go to the model together. An episode ends
after its last read, where the policy finishes the sentence.

The model side is a `StreamingEngine` (any decoding mode; a plain `Generator` means re-encode):
the driver tells it every read and every written segment, waits included, so append/slots modes
can keep each episode's cache in step with what was read and written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .engine import StreamingEngine, StreamState
from .generation import Completion, Generator
from .languages import LanguagePair
from .policies.base import Policy, State
from .stream import Episode, Step, chunk_source, count_units, join_reads


@dataclass
class _Run:
    pos: int
    key: object
    episode: Episode
    reads: list[str]
    stream: StreamState | None = None
    t: int = 0  # reads consumed


def _state(run: _Run, pair: LanguagePair) -> State:
    prefix = join_reads(run.reads[: run.t], pair.source_unit)
    return State(
        pair=pair,
        source_prefix=prefix,
        read_units=count_units(prefix, pair.source_unit),
        source_finished=run.t == len(run.reads),
        target=run.episode.prediction,
        step=run.t,
    )


def as_engine(generator: Generator | StreamingEngine | None) -> StreamingEngine | None:
    """A plain Generator is the re-encode mode of an engine."""
    if generator is None or isinstance(generator, StreamingEngine):
        return generator
    return StreamingEngine.reencoding(generator)


def run_episodes(
    sources: Iterable[tuple[object, str]],
    policy: Policy,
    generator: Generator | StreamingEngine | None,
    pair: LanguagePair,
    chunk: int,
    on_step: Callable[[object, Episode, Step], None] | None = None,
    on_done: Callable[[object, Episode], None] | None = None,
    width: int = 8,
    group: int = 1,
    on_model: Callable[[object, Episode, Step, Completion], None] | None = None,
) -> list[Episode]:
    """Run (key, source) pairs through `policy`, `width` sources at a time.

    `group` > 1 runs that many rollouts of each source (GRPO groups): they are forked from one
    engine state after the episode opens, so the prefix cache is shared, and the result holds
    `group` consecutive episodes per source. `on_step` sees every step as it happens (live views,
    servers), `on_done` every finished episode (eval writes its JSONL line there), `on_model` every
    step that ran the model together with its completion (token ids for training on rollouts).
    Returns the episodes in input order.
    """
    engine = as_engine(generator)
    results: dict[int, Episode] = {}
    queue = iter(enumerate(sources))
    active: list[_Run] = []

    def refill():
        while len(active) < width * group:
            item = next(queue, None)
            if item is None:
                return
            pos, (key, src) = item
            fields = dict(source=src.strip(), source_unit=pair.source_unit, target_unit=pair.target_unit)
            reads = chunk_source(src, pair.source_unit, chunk)
            if not reads:  # empty line: empty prediction, no steps
                for g in range(group):
                    ep = Episode(**fields)
                    results[pos * group + g] = ep
                    if on_done:
                        on_done(key, ep)
                continue
            streams = [None] * group
            if engine is not None:
                streams = engine.fork(engine.open(pair, reads), group) if group > 1 else [engine.open(pair, reads)]
            for g, stream in enumerate(streams):
                active.append(_Run(pos * group + g, key, Episode(**fields), reads, stream))

    def record(run: _Run, state: State, step: Step) -> bool:
        step.finished = state.source_finished
        step.chunk = run.reads[run.t - 1]
        run.episode.steps.append(step)
        if on_step:
            on_step(run.key, run.episode, step)
        return state.source_finished

    refill()
    while active:
        # Advance every episode through the steps that need no model (waits) until it needs the
        # model or ends, so each model call batches one request from every active episode.
        pending: list[tuple[_Run, State, object]] = []
        finished: list[_Run] = []
        for run in active:
            while True:
                run.t += 1
                state = _state(run, pair)
                if engine is not None:
                    engine.read(run.stream, run.reads[run.t - 1], last=state.source_finished)
                request = policy.plan(state)
                if request is not None:
                    pending.append((run, state, request))
                    break
                if engine is not None:
                    engine.write(run.stream, "")
                if record(run, state, Step(read=state.read_units, written="", elapsed_ms=0.0)):
                    finished.append(run)
                    break
        if pending and engine is None:
            raise RuntimeError(f"policy '{policy.name}' needs a model")
        completions = engine.generate([r.stream for r, _, _ in pending], [q for _, _, q in pending]) \
            if pending else []
        for (run, state, _), completion in zip(pending, completions):
            written = policy.segment(state, completion)
            engine.write(run.stream, written)
            step = Step(read=state.read_units, written=written, elapsed_ms=completion.elapsed_ms)
            if on_model:
                on_model(run.key, run.episode, step, completion)
            if record(run, state, step):
                finished.append(run)
        for run in finished:
            active.remove(run)
            if engine is not None:
                engine.close(run.stream)
            results[run.pos] = run.episode
            if on_done:
                on_done(run.key, run.episode)
        refill()
    return [results[i] for i in sorted(results)]


def stream_text(source: str, policy: Policy, generator: Generator | None, pair: LanguagePair, chunk: int,
                on_step: Callable[[object, Episode, Step], None] | None = None) -> Episode:
    """One sentence, streamed; `on_step` sees each step as it happens."""
    return run_episodes([(0, source)], policy, generator, pair, chunk, on_step=on_step)[0]


__all__ = ["run_episodes", "stream_text"]
