"""SeqPO policy (arXiv 2505.20622, sec. 3.1): the LLM itself decides. At each read it continues the
streaming prompt; an empty continuation means wait. At the last read it must finish the sentence.
"""

from __future__ import annotations

from ..generation import Completion, Request
from ..prompts import complete_prefix, seqpo_prompt, streaming_prefix
from .base import Policy, State, final_budget, whole_units


class LLMPolicy(Policy):
    name = "llm"

    def __init__(self, max_step_tokens: int = 60, few_shot: bool = True):
        self.max_step_tokens = max_step_tokens
        self.few_shot = few_shot  # a fine-tuned adapter knows the format and needs no examples

    def plan(self, state: State) -> Request | None:
        prompt = seqpo_prompt(state.pair, state.source_prefix, state.target)
        unit = state.pair.target_unit
        if state.source_finished:
            prefix = complete_prefix(state.pair) if self.few_shot else ""
            return Request(prefix, prompt, final_budget(state), unit=unit)
        prefix = streaming_prefix(state.pair) if self.few_shot else ""
        return Request(prefix, prompt, self.max_step_tokens, unit=unit)

    def segment(self, state: State, completion: Completion) -> str:
        if state.source_finished:
            return completion.text.replace("\ufffd", "").strip()
        return whole_units(completion, state.pair.target_unit)

    def settings(self) -> dict:
        return {"policy": self.name, "max_step_tokens": self.max_step_tokens, "few_shot": self.few_shot}
