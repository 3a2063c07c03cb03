"""SimulEval instance records: the fields of one `instances.jsonl` line (one finished sentence), with its
latency (AL, LAAL, DAL, AP) and the computation-aware AL_CA / LAAL_CA."""

from __future__ import annotations

from .metrics.latency import computation_aware_scores, episode_latency
from .stream import Episode, count_units


def instance_record(index: int, episode: Episode, reference: str, unit_ms: float) -> dict:
    delays, elapsed = episode.delays(), episode.elapsed()
    src_len = episode.source_length
    ref_len = count_units(reference, episode.target_unit)
    record = {
        "index": index,
        "source": episode.source,
        "prediction": episode.prediction,
        "delays": delays,
        "elapsed": elapsed,
        "source_length": src_len,
        "reference": reference,
        "prediction_length": len(delays),
        "reference_length": ref_len,
        "wait_fraction": episode.wait_fraction,
        "steps": [s.to_dict() for s in episode.steps],
        "metric": episode_latency(episode, ref_len, unit_ms),
    }
    if episode.retranslated:  # every translation shown, so normalized erasure can be recomputed
        record["displays"] = episode.displays
    return record


def add_computation_aware(record: dict, unit_ms: float) -> None:
    """AL_CA / LAAL_CA of one instance record, at `unit_ms` per source unit."""
    record["metric"].update(computation_aware_scores(record["delays"], record["elapsed"], record["source_length"],
                                                     record["reference_length"], unit_ms))
