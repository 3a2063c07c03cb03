"""Stream sources through a policy, many episodes in lockstep so model calls are batched.

At step t every unfinished episode reads its t-th chunk, and all their generation requests go to
the model together. An episode ends after its last read (where the policy finishes the sentence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .generation import Generator
from .languages import LanguagePair
from .policies.base import Policy, State
from .stream import Episode, Step, append_segment, chunk_source, count_units, join_reads


@dataclass
class _Run:
    pos: int
    key: object
    episode: Episode
    reads: list[str]
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


def run_episodes(
    sources: Iterable[tuple[object, str]],
    policy: Policy,
    generator: Generator | None,
    pair: LanguagePair,
    chunk: int,
    on_step: Callable[[object, Episode, Step], None] | None = None,
    on_done: Callable[[object, Episode], None] | None = None,
    width: int = 8,
) -> list[Episode]:
    """Run (key, source) pairs through `policy`, `width` episodes at a time.

    `on_step` sees every step as it happens (live views, servers), `on_done` every finished
    episode (eval writes its JSONL line there). Returns the episodes in input order.
    """
    results: dict[int, Episode] = {}
    queue = iter(enumerate(sources))
    active: list[_Run] = []

    def refill():
        while len(active) < width:
            item = next(queue, None)
            if item is None:
                return
            pos, (key, src) = item
            ep = Episode(source=src.strip(), source_unit=pair.source_unit, target_unit=pair.target_unit)
            reads = chunk_source(src, pair.source_unit, chunk)
            run = _Run(pos, key, ep, reads)
            if not reads:  # empty line: empty prediction, no steps
                results[pos] = ep
                if on_done:
                    on_done(key, ep)
                continue
            active.append(run)

    refill()
    while active:
        states, requests = [], []
        for run in active:
            run.t += 1
            state = _state(run, pair)
            states.append(state)
            requests.append(policy.plan(state))
        wanted = [r for r in requests if r is not None]
        if wanted and generator is None:
            raise RuntimeError(f"policy '{policy.name}' needs a model")
        completions = iter(generator.complete(wanted) if wanted else [])
        finished = []
        for run, state, req in zip(active, states, requests):
            if req is None:
                step = Step(read=state.read_units, written="", elapsed_ms=0.0)
            else:
                completion = next(completions)
                written = policy.segment(state, completion)
                step = Step(read=state.read_units, written=written, elapsed_ms=completion.elapsed_ms)
            step.finished = state.source_finished
            run.episode.steps.append(step)
            if on_step:
                on_step(run.key, run.episode, step)
            if state.source_finished:
                finished.append(run)
        for run in finished:
            active.remove(run)
            results[run.pos] = run.episode
            if on_done:
                on_done(run.key, run.episode)
        refill()
    return [results[i] for i in sorted(results)]


def stream_text(source: str, policy: Policy, generator: Generator | None, pair: LanguagePair, chunk: int,
                on_step: Callable[[object, Episode, Step], None] | None = None) -> Episode:
    """One sentence, streamed; `on_step` sees each step as it happens."""
    return run_episodes([(0, source)], policy, generator, pair, chunk, on_step=on_step)[0]


__all__ = ["run_episodes", "stream_text", "append_segment"]
