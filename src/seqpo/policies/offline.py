"""Offline baseline: wait for the whole source, then translate it in one go."""

from __future__ import annotations

from ..requests import Completion, Request
from .base import Policy, State, finish_request, finished_text


class OfflinePolicy(Policy):
    name = "offline"
    summary = "wait for the whole sentence"

    def __init__(self, few_shot: bool = True):
        self.few_shot = few_shot

    def plan(self, state: State) -> Request | None:
        if not state.source_finished:
            return None
        return finish_request(state, self.few_shot)

    def segment(self, state: State, completion: Completion) -> str:
        return finished_text(state, completion)
