"""The records of an eval run: SimulEval instance records (the fields of one `instances.jsonl` line, one
finished sentence, with its latency AL, LAAL, DAL, AP and the computation-aware AL_CA / LAAL_CA), and the
run's signature in `scores.json` (every setting that changes a number, as sacrebleu signs its scores)."""

from __future__ import annotations

from . import __version__
from .engine import REFERENCE_MODE, engine_class
from .languages import LanguagePair
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


# Settings that older seqpo versions did not record in settings.json, with the value they used.
LEGACY_DEFAULTS = {"decoding": REFERENCE_MODE, "slot": None, "few_shot": True, "chat_template": "off",
                   "asr_window": 0.0, "asr_vad": "off", "asr": "tiny.en", "quantize": "off",
                   "vocab": "full"}


def signature(settings, pair: LanguagePair, policy_settings: dict, quality: dict) -> dict:
    return {
        "pair": str(pair),
        **policy_settings,
        "chunk": settings.chunk,
        "model": settings.model or "bundled:gemma-3-270m",
        "adapter": settings.adapter,
        "latency_unit": {"source": pair.source_unit, "target": pair.target_unit},
        "latency_reference_length": "reference (SimulEval use_ref_len)",
        "unit_ms": settings.unit_ms,
        "batch_size": settings.batch_size,
        "decoding": settings.decoding,
        "device": settings.device,
        "dtype": settings.dtype,
        "quantize": settings.quantize,
        "vocab": settings.vocab,
        "chat_template": settings.chat_template,
        "slot": settings.slot if engine_class(settings.decoding).reserves_source else None,
        "sacrebleu": quality.get("signatures", {}),
        "seqpo": __version__,
    }
