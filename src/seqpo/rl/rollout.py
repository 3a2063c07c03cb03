"""Rollouts for GRPO: B sampled streaming episodes per source, with what training needs.

Each source is streamed `group` times by the SeqPO policy with sampling on (temperature 1.0 by
default). The episodes of a group are forked from one engine state and every model call batches
all active episodes of all sources (`simulate.run_episodes`). Every step that ran the model keeps
its prompt token ids, the tokens it generated and their log-probabilities under the sampling
distribution; steps where the policy waited without the model carry no tokens and get no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.transcript import Transcript
from ..model_steps import ModelSteps
from ..generation import Generator
from ..languages import LanguagePair
from ..metrics.quality import sentence_scores
from ..policies.llm import LLMPolicy
from ..requests import Completion
from ..simulate import run_episodes
from ..stream import Episode, Step, count_units
from .reward import reward_latency


@dataclass
class StepSample:
    """One model call of an episode: what the model saw and what it sampled."""

    step: int  # index into episode.steps
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]  # of token_ids when sampled
    must_write: bool = False  # the episode's last step: its first token could not end the line


@dataclass
class Rollout:
    source_index: int
    reference: str
    episode: Episode
    samples: list[StepSample] = field(default_factory=list)
    transcript: Transcript | None = None  # append/slots: the episode as the engine ran it (its update sequence)

    @property
    def tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.samples)


def sample_rollouts(
    generator: Generator | ModelSteps,
    policy: LLMPolicy,
    pair: LanguagePair,
    chunk: int,
    items: list[tuple[int, str, str]],
    group: int,
) -> list[list[Rollout]]:
    """`group` rollouts for each (index, source, reference); one list per source, input order.

    `generator` must sample (do_sample=True) for the log-probs to be recorded: a Generator (each
    step's whole prompt through `generate`) or an engine in `cached` mode (the same prompts,
    running only what the previous step's prompt did not share; the group is forked after opening),
    or an append/slots engine recording its rows' transcripts (`engine.record`): each rollout then
    carries its episode's transcript, the sequence its update scores.
    """
    if not generator.do_sample:
        raise ValueError("rollouts need a sampling generator (do_sample=True)")
    samples: dict[int, list[StepSample]] = {}

    def on_model(_key, episode: Episode, _step: Step, completion: Completion) -> None:
        if not completion.token_ids:
            return
        samples.setdefault(id(episode), []).append(StepSample(  # the step is the episode's last one
            len(episode.steps) - 1, completion.prompt_ids, completion.token_ids, completion.logprobs))

    transcripts: dict[int, Transcript] = {}

    def on_row(episode: Episode, row) -> None:
        if getattr(row, "transcript", None) is not None:
            transcripts[id(episode)] = row.transcript

    episodes = run_episodes([(i, src) for i, src, _ in items], policy, generator, pair, chunk,
                            width=max(1, len(items)), group=group, on_model=on_model, on_row=on_row)
    groups = []
    for n, (index, _src, ref) in enumerate(items):
        eps = episodes[n * group : (n + 1) * group]
        groups.append([Rollout(index, ref, ep, samples.get(id(ep), []), transcripts.get(id(ep))) for ep in eps])
        for r in groups[-1]:
            for s in r.samples:  # the last read asks the policy to finish (policies.base.finish_request)
                s.must_write = s.step == len(r.episode.steps) - 1 and r.episode.steps[-1].read > 0
    return groups


@dataclass
class EpisodeScore:
    quality: float  # sentence metric, 0-100
    latency: float  # AL: source units for text, ms of audio for speech (the source length if nothing was written)
    laal: float
    wait_fraction: float
    source_length: float  # in the latency's unit


def score_rollouts(rollouts: list[Rollout], target_lang: str, metric: str = "chrf",
                   comet: str | None = None) -> list[EpisodeScore]:
    """Sentence quality and latency of each episode (`reward.reward_latency`: text or speech)."""
    eps = [r.episode for r in rollouts]
    quality = sentence_scores([e.source for e in eps], [e.prediction for e in eps],
                              [r.reference for r in rollouts], target_lang, metric, comet)
    out = []
    for r, ep, q in zip(rollouts, eps, quality):
        ref_len = count_units(r.reference, ep.target_unit)
        al, length = reward_latency(ep, ref_len, "AL")
        laal, _ = reward_latency(ep, ref_len, "LAAL")
        out.append(EpisodeScore(q, al, laal, ep.wait_fraction, length))
    return out
