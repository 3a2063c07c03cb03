"""Offline baseline: wait for the whole source, then translate it in one go."""

from __future__ import annotations

from ..generation import Completion, Request
from ..prompts import complete_prefix, seqpo_prompt
from .base import Policy, State, final_budget


class OfflinePolicy(Policy):
    name = "offline"

    def plan(self, state: State) -> Request | None:
        if not state.source_finished:
            return None
        return Request(
            prefix=complete_prefix(state.pair),
            prompt=seqpo_prompt(state.pair, state.source_prefix, state.target),
            max_new_tokens=final_budget(state),
            unit=state.pair.target_unit,
        )

    def segment(self, state: State, completion: Completion) -> str:
        return completion.text.replace("\ufffd", "").strip()
