"""The JSON events of a streaming translation, one per policy step (`write` / `wait`) and one per
finished sentence (`done`, with its latency): what `seqpo translate --json` prints and the server sends."""

from __future__ import annotations

from .metrics.latency import episode_latency
from .stream import Episode, Step


def step_event(episode: Episode, step: Step) -> dict:
    if step.display is not None:  # re-translation: the whole translation now shown replaces the last one
        event = {"type": "update", "display": step.display, "read": step.read,
                 "elapsed_ms": round(step.elapsed_ms, 1)}
    elif step.written:
        event = {"type": "write", "text": step.written, "read": step.read,
                 "target": episode.prediction, "elapsed_ms": round(step.elapsed_ms, 1)}
    else:
        event = {"type": "wait", "read": step.read, "elapsed_ms": round(step.elapsed_ms, 1)}
    if step.audio_ms is not None:  # speech input: the audio received when the step ran
        event["audio_ms"] = round(step.audio_ms, 1)
    return event


def done_event(episode: Episode) -> dict:
    # no reference here: AL/LAAL use the prediction's own length (SimulEval without use_ref_len)
    event = {"type": "done", "source": episode.source, "prediction": episode.prediction,
             "delays": episode.delays()}
    lat = episode_latency(episode)
    if episode.audio_span is not None:  # speech input: latency in ms of the sentence's audio
        lat = {k: round(v, 1) for k, v in lat.items()}
        event.update(lat, AL=lat.get("AL"), LAAL=lat.get("LAAL"),
                     audio_span=[round(t, 1) for t in episode.audio_span], latency_unit="ms")
    else:
        event.update(AL=lat.get("AL"), LAAL=lat.get("LAAL"))
    event["wait_fraction"] = round(episode.wait_fraction, 3)
    return event
