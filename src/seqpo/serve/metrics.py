"""Prometheus metrics of the translation server (text format at GET /metrics).

Each app gets its own registry, so several apps in one process (tests) never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Step latency from the moment a step's request is queued to its completion: what a listener
# waits for; CPU steps of a 270M model take 0.1-2 s, a tiny test model a few ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter("seqpo_sessions", "WebSocket sessions opened", registry=r)
        self.sessions_active = Gauge("seqpo_sessions_active", "WebSocket sessions open now", registry=r)
        self.sentences = Counter("seqpo_sentences", "sentences translated to the end", ["endpoint"], registry=r)
        self.steps = Counter("seqpo_steps", "policy steps", ["action"], registry=r)
        self.errors = Counter("seqpo_errors", "error events sent to clients", ["code"], registry=r)
        self.step_latency = Histogram("seqpo_step_latency_seconds", "queue + model time of a model step",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("seqpo_batch_size", "requests per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_depth = Gauge("seqpo_queue_depth", "model requests waiting for the worker", registry=r)
        self.dropped = Gauge("seqpo_dropped_requests", "queued requests dropped since start (client gone)",
                             registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
