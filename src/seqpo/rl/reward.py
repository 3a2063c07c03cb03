"""Episode rewards for SiMT policy optimisation.

SeqPO fused reward (SeqPO-SiMT, arXiv 2505.20622, sec. 3.3): for the B rollouts of one source,
quality q and latency L (Average Lagging, in target-side units: words, or characters for zh/ja)
are each normalised within the group, latency is truncated, L' = max(m, L), and
r = lambda * q - L'. The paper's ablations: without truncation the policy learns to write before
reading (negative AL, gibberish); without normalisation quality drops.

Order of normalisation and truncation: the paper's order is normalise *then* truncate
(`order="normalize-first"`, the default). Note what it means: a z-scored latency is
compared with m (the chunk size), so only rollouts lagging more than m standard deviations above
the group mean are penalised differently. `order="truncate-first"` clips the raw AL at m words
before normalising, which is the reading where "lagging below one chunk earns nothing" holds in
units; both are offered for ablations.

Hierarchical reward (HPO: Hierarchical Policy Optimization for Simultaneous Translation of Unbounded
Speech, arXiv 2604.21045, code at github.com/owaski/HPO): quality must clear a threshold before
latency counts at all, so the policy cannot trade quality away for speed.

Speech episodes (the cascade of `seqpo.speech`, an `Episode` with an `audio_span`): latency is in
ms of audio (`reward_latency`), and so is the source length the hierarchical reward divides by,
so r = 1 - AL_ms / audio_ms above the quality bar: a translation lagging half the utterance earns
0.5, one that keeps pace with the speaker nearly 1, whatever the speaking rate. For the fused
reward the truncation floor m is then in ms too (e.g. the audio chunk, 500 ms, with
`order="truncate-first"`); with the default normalise-first order the unit cancels out.

Group statistics use the sample standard deviation, as TRL's GRPOTrainer does.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..metrics.latency import episode_latency, episode_source_length


def group_normalize(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """(v - mean) / std within one group; all zeros when the group has no spread."""
    if len(values) < 2:
        return [0.0 for _ in values]
    mean = statistics.fmean(values)
    std = statistics.stdev(values)
    if std < eps:
        return [0.0 for _ in values]
    return [(v - mean) / std for v in values]


def seqpo_rewards(
    quality: Sequence[float],
    latency: Sequence[float],
    chunk: float,
    lam: float = 2.0,
    normalize: bool = True,
    truncate: bool = True,
    order: str = "normalize-first",
) -> list[float]:
    """Fused rewards r = lambda * q - L' for the rollouts of one source."""
    if len(quality) != len(latency):
        raise ValueError("need one latency per quality score")
    if order not in ("normalize-first", "truncate-first"):
        raise ValueError(f"unknown order {order!r}")
    q = group_normalize(quality) if normalize else list(quality)
    lat = list(latency)
    if truncate and order == "truncate-first":
        lat = [max(chunk, x) for x in lat]
    if normalize:
        lat = group_normalize(lat)
    if truncate and order == "normalize-first":
        lat = [max(chunk, x) for x in lat]
    return [lam * a - b for a, b in zip(q, lat)]


def hierarchical_rewards(
    quality: Sequence[float],
    latency: Sequence[float],
    source_length: Sequence[float],
    threshold: float,
) -> list[float]:
    """HPO-style: below the quality threshold, r = q/threshold - 1 (in [-1, 0)); at or above it,
    r = 1 - clip(L / |X|, 0, 1) (in [0, 1]), so any rollout that clears the bar beats every one
    that does not, and among those the faster wins. Latency and |X| share a unit (words, or ms)."""
    if not (len(quality) == len(latency) == len(source_length)):
        raise ValueError("quality, latency and source_length must have one entry per rollout")
    if threshold <= 0:
        raise ValueError("the quality threshold must be positive")
    out = []
    for q, lat, n in zip(quality, latency, source_length):
        if q < threshold:
            out.append(q / threshold - 1.0)
        else:
            out.append(1.0 - min(1.0, max(0.0, lat / n)) if n > 0 else 0.0)
    return out


def group_rewards(scores: Sequence, settings) -> list[float]:
    """The rewards of one group's episodes (`rollout.EpisodeScore`s) as the run's settings choose
    (`TrainSettings`: reward, and chunk/lam/no_normalize/no_truncate/order or threshold)."""
    q = [s.quality for s in scores]
    lat = [s.latency for s in scores]
    if settings.reward == "hierarchical":
        return hierarchical_rewards(q, lat, [s.source_length for s in scores], settings.threshold)
    return seqpo_rewards(q, lat, settings.chunk, settings.lam, normalize=not settings.no_normalize,
                         truncate=not settings.no_truncate, order=settings.order)


def reward_latency(episode, reference_length: int, metric: str = "AL") -> tuple[float, float]:
    """(latency, source length) of one rollout as the rewards see it: AL or LAAL
    (`metrics.latency.episode_latency`: source units for text, ms of audio for speech). An episode
    that wrote nothing has no AL (SimulEval leaves it undefined); it counts as lagging the whole source."""
    if metric not in ("AL", "LAAL"):
        raise ValueError(f"unknown latency metric {metric!r}")
    length = episode_source_length(episode)
    return episode_latency(episode, reference_length).get(metric, length), length


def advantages(rewards: Sequence[float]) -> list[float]:
    """GRPO advantage of each rollout: its reward normalised within the group. Every token the
    policy wrote in every step of that episode shares it."""
    return group_normalize(rewards)
