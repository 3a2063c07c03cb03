"""SeqPO policy (arXiv 2505.20622, sec. 3.1): the LLM itself decides. At each read it continues the
streaming prompt; an empty continuation means wait. At the last read it must finish the sentence.

One guard is ours: the target may not run ahead of the source by more than `max_lead` source
units' worth (pair length ratio). A model that wants to write further than that is hallucinating
or looping; when the guard leaves nothing to write, the step waits without running the model.
"""

from __future__ import annotations

import math

from ..prompts import seqpo_prompt, streaming_prefix
from ..requests import Completion, Request
from ..stream import count_units
from .base import Policy, State, finish_request, finished_text, whole_units


class LLMPolicy(Policy):
    name = "llm"
    summary = "the model decides; SeqPO-SiMT"

    def __init__(self, max_step_tokens: int = 60, few_shot: bool = True, max_lead: float = 2.0):
        self.max_step_tokens = max_step_tokens
        self.max_lead = max_lead
        self.few_shot = few_shot  # a fine-tuned adapter knows the format and needs no examples

    def plan(self, state: State) -> Request | None:
        if state.source_finished:
            return finish_request(state, self.few_shot)
        todo = self.room(state)
        if todo <= 0:
            return None
        prefix = streaming_prefix(state.pair) if self.few_shot else ""
        prompt = seqpo_prompt(state.pair, state.source_prefix, state.target)
        return Request(prefix, prompt, self.max_step_tokens, max_units=todo, unit=state.pair.target_unit)

    def room(self, state: State) -> int:
        """Target units the guard still allows at this step."""
        allowed = math.ceil(state.pair.unit_ratio * (state.read_units + self.max_lead))
        return allowed - count_units(state.target, state.pair.target_unit)

    def segment(self, state: State, completion: Completion) -> str:
        if state.source_finished:
            return finished_text(state, completion)
        return whole_units(completion, state.pair.target_unit, limit=self.room(state))

    def settings(self) -> dict:
        return {"policy": self.name, "max_step_tokens": self.max_step_tokens, "few_shot": self.few_shot,
                "max_lead": self.max_lead}
