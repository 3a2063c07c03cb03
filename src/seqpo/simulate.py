"""Stream sources through a policy, many episodes in lockstep so model calls are batched.

Every episode advances until its policy needs the model (reads where it waits without the model
cost nothing) and starts a step in the engine; each engine pass runs one token (or one new block)
of every running step, and an episode whose step ended takes its next read straight away while
longer steps go on (continuous batching; re-encode runs each batch of requests to the end). An
episode ends after its last read, where the policy finishes the sentence.

The model side is a `StreamingEngine` (any decoding mode; a plain `Generator` means re-encode):
the driver tells it every read and every written segment, waits included, so append/slots modes
can keep each episode's cache in step with what was read and written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .engine import Ahead, StreamingEngine, StreamState
from .generation import Generator
from .languages import LanguagePair
from .policies.base import Policy, State
from .requests import Completion
from .stream import Episode, Step, chunk_source, count_units, join_reads


@dataclass
class _Run:
    pos: int
    key: object
    episode: Episode
    reads: list[str]
    stream: StreamState | None = None
    t: int = 0  # reads consumed
    ahead: int = 1  # look-ahead reads offered at the next step (grows while the episode keeps waiting)


def _state(run: _Run, pair: LanguagePair, t: int | None = None) -> State:
    """The policy's view after `t` reads (default: the reads consumed so far)."""
    t = run.t if t is None else t
    prefix = join_reads(run.reads[:t], pair.source_unit)
    return State(
        pair=pair,
        source_prefix=prefix,
        read_units=count_units(prefix, pair.source_unit),
        source_finished=t == len(run.reads),
        target=run.episode.prediction,
        step=t,
    )


def _ahead(run: _Run, policy: Policy, pair: LanguagePair, limit: int) -> list[Ahead]:
    """The next reads the engine may take in the same pass (look-ahead), planned as if every read
    before them waits (a wait leaves the target, and so the policy's state, unchanged): up to
    `limit` reads, ending at a read that may not wait, never ending on a read without a model call."""
    later: list[Ahead] = []
    for t in range(run.t + 1, min(run.t + limit, len(run.reads)) + 1):
        state = _state(run, pair, t)
        request = policy.plan(state)
        later.append(Ahead(run.reads[t - 1], state.source_finished, request))
        if request is not None and request.must_write:
            break
    while later and later[-1].request is None:
        later.pop()
    return later


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

    def finish(run: _Run) -> None:
        active.remove(run)
        if engine is not None:
            engine.close(run.stream)
        results[run.pos] = run.episode
        if on_done:
            on_done(run.key, run.episode)

    refill()
    ready = list(active)  # episodes whose next read is due
    while active:
        # Take each ready episode through the reads that need no model (waits) until its policy
        # asks for the model (a step starts in the engine) or the episode ends.
        for run in ready:
            while True:
                run.t += 1
                state = _state(run, pair)
                if engine is not None:
                    engine.read(run.stream, run.reads[run.t - 1], last=state.source_finished)
                request = policy.plan(state)
                if request is not None:
                    if engine is None:
                        raise RuntimeError(f"policy '{policy.name}' needs a model")
                    later = _ahead(run, policy, pair, min(run.ahead, engine.lookahead)) if engine.lookahead else []
                    run.ahead = len(later)
                    then = [(run.reads[i], i == len(run.reads) - 1) for i in range(run.t, len(run.reads))] \
                        if engine.write_ahead else None
                    engine.start(run.stream, request, later, then)
                    break
                if engine is not None:
                    engine.write(run.stream, "")
                if record(run, state, Step(read=state.read_units, written="", elapsed_ms=0.0)):
                    finish(run)
                    break
        ready = []
        # One model pass over every running step; the steps that end come back, the others go on.
        by_stream = {id(run.stream): run for run in active}
        for stream, taken in (engine.advance() if engine is not None and engine.busy else []):
            run = by_stream[id(stream)]
            # one entry per read the engine took: every entry but the last is a wait it already
            # wrote into its cache (look-ahead); the last is written here
            for i, completion in enumerate(taken):
                if i:
                    run.t += 1
                state = _state(run, pair)
                written = policy.segment(state, completion) if completion is not None else ""
                if i < len(taken) - 1 and written:
                    raise RuntimeError("look-ahead took a read whose step writes")  # cannot happen: waits only
                if i == len(taken) - 1:
                    engine.write(run.stream, written)
                elapsed = completion.elapsed_ms if completion is not None else 0.0
                step = Step(read=state.read_units, written=written, elapsed_ms=elapsed)
                if on_model and completion is not None:
                    on_model(run.key, run.episode, step, completion)
                if record(run, state, step):
                    finish(run)
                    break
            else:
                # Look-ahead reads cost compute even when not taken: offer one after a write, twice as
                # many as last time after a step that took every offered read as a wait.
                run.ahead = 2 * max(1, run.ahead) if len(taken) > run.ahead and not written else 1
                ready.append(run)
        known = len(active)
        refill()
        ready += active[known:]
    return [results[i] for i in sorted(results)]


def stream_text(source: str, policy: Policy, generator: Generator | None, pair: LanguagePair, chunk: int,
                on_step: Callable[[object, Episode, Step], None] | None = None) -> Episode:
    """One sentence, streamed; `on_step` sees each step as it happens."""
    return run_episodes([(0, source)], policy, generator, pair, chunk, on_step=on_step)[0]


__all__ = ["run_episodes", "stream_text"]
