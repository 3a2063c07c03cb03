"""Offline baseline: wait for the whole source, then translate it in one go."""

from __future__ import annotations

from ..generation import Completion, Request
from .base import Policy, State, finish_request, finished_text


class OfflinePolicy(Policy):
    name = "offline"

    def plan(self, state: State) -> Request | None:
        if not state.source_finished:
            return None
        return finish_request(state)

    def segment(self, state: State, completion: Completion) -> str:
        return finished_text(state, completion)
