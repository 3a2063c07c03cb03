"""How a translation that failed after it was accepted is told to a client: one error code per kind
of failure, the same for every path that runs sentences through the worker (WebSocket text
sentences in `steps.py`, audio streams in `audio.py`, the POST routes in `app.py`).

busy (503): the worker's queue was full; worker (503): the model worker has stopped; too_long
(400): a slots region overflowed; model (500): the model (or the ASR) raised, logged here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..engine import SourceRegionFullError
from .worker import Busy, WorkerDead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    code: str  # the protocol's error code
    status: int  # its HTTP status (POST routes)
    message: str
    after: str  # what a live session adds: what became of the sentence

    @property
    def live_message(self) -> str:
        """The message on a WebSocket, where the session goes on without the sentence."""
        return f"{self.message}; {self.after}"


def failure_of(exc: Exception) -> Failure:
    """The error a client is told for `exc`, raised while its sentence was translated."""
    if isinstance(exc, Busy):
        return Failure("busy", 503, str(exc), "sentence dropped, try again later")
    if isinstance(exc, WorkerDead):
        return Failure("worker", 503, str(exc), "the server cannot translate")
    if isinstance(exc, SourceRegionFullError):
        return Failure("too_long", 400, str(exc), "sentence dropped")
    log.error("translation failed", exc_info=exc)
    return Failure("model", 500, f"translation failed: {exc}", "sentence dropped")
