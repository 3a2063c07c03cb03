"""Stream whole sources (file lines, rollout prompts) through a policy, many episodes in lockstep so
model calls are batched: each source is an `EpisodeRun` fed and ended at once, stepped by
`driver.drive`.

Every episode advances until its policy needs the model (reads where it waits without the model
cost nothing) and starts a step in the engine; each engine pass runs one token (or one new block)
of every running step, and an episode whose step ended takes its next read straight away while
longer steps go on (continuous batching; re-encode runs each batch of requests to the end). An
episode ends after its last read, where the policy finishes the sentence.

The model side is a `ModelSteps` (any decoding mode; a plain `Generator` means re-encode):
the driver tells it every read and every written segment, waits included, so append/slots modes
can keep each episode's cache in step with what was read and written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .driver import EpisodeRun, drive
from .engine.reencode import ReencodeEngine
from .model_steps import ModelSteps
from .generation import Generator
from .languages import LanguagePair
from .policies.base import Policy
from .requests import Completion
from .stream import Episode, Step


def as_engine(generator: Generator | ModelSteps | None) -> ModelSteps | None:
    """A plain Generator is the re-encode mode of an engine."""
    if generator is None or isinstance(generator, ModelSteps):
        return generator
    return ReencodeEngine.over(generator)


def run_episodes(
    sources: Iterable[tuple[object, str]],
    policy: Policy,
    generator: Generator | ModelSteps | None,
    pair: LanguagePair,
    chunk: int,
    on_step: Callable[[object, Episode, Step], None] | None = None,
    on_done: Callable[[object, Episode], None] | None = None,
    width: int = 8,
    group: int = 1,
    on_model: Callable[[object, Episode, Step, Completion], None] | None = None,
    on_row: Callable[[Episode, object], None] | None = None,
) -> list[Episode]:
    """Run (key, source) pairs through `policy`, `width` sources at a time.

    `group` > 1 runs that many rollouts of each source (GRPO groups): they are forked from one
    engine state after the episode opens, so the prefix cache is shared, and the result holds
    `group` consecutive episodes per source. `on_step` sees every step as it happens (live views,
    servers), `on_done` every finished episode (eval writes its JSONL line there), `on_model` every
    step that ran the model together with its completion (token ids for training on rollouts). Both
    step hooks see the step already recorded (the episode's last step). `on_row` sees every finished
    episode with its model-side row (training reads the transcript an append/slots engine recorded).
    Returns the episodes in input order.
    """
    engine = as_engine(generator)
    results: dict[int, Episode] = {}

    def batches():
        for pos, (key, src) in enumerate(sources):
            runs = [EpisodeRun.whole(pair, policy, src, chunk, key=(pos * group + g, key), model=engine)
                    for g in range(group)]
            if engine is not None and not runs[0].done:  # an empty line has no steps and no row
                row = engine.open(pair, [read for read, _ in runs[0].remaining_reads()])
                for run, forked in zip(runs, engine.fork(row, group) if group > 1 else [row]):
                    run.row = forked
            yield runs

    def step(run: EpisodeRun, step: Step, completion: Completion | None) -> None:
        if on_model and completion is not None:
            on_model(run.key[1], run.episode, step, completion)
        if on_step:
            on_step(run.key[1], run.episode, step)

    def done(run: EpisodeRun) -> None:
        results[run.key[0]] = run.episode
        if on_row:
            on_row(run.episode, run.row)
        if on_done:
            on_done(run.key[1], run.episode)

    drive(batches(), engine, width=width * group, on_step=step, on_done=done)
    return [results[i] for i in sorted(results)]


def stream_text(source: str, policy: Policy, generator: Generator | None, pair: LanguagePair, chunk: int,
                on_step: Callable[[object, Episode, Step], None] | None = None) -> Episode:
    """One sentence, streamed; `on_step` sees each step as it happens."""
    return run_episodes([(0, source)], policy, generator, pair, chunk, on_step=on_step)[0]


__all__ = ["as_engine", "run_episodes", "stream_text"]
