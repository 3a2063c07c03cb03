"""Wait-k (Ma et al., 2019, STACL), test-time variant: the LLM translates the source prefix and we
keep only one read's worth of new target per read.

After k reads the policy may have written ratio * (units read - units in the first k-1 reads)
target units, `ratio` being the pair's target/source length ratio (languages.UNIT_RATIO), so for
en-zh one English word buys ~1.8 Chinese characters; at the end of the source it finishes the
sentence.
"""

from __future__ import annotations

import math

from ..prompts import complete_prefix, seqpo_prompt
from ..requests import Completion, Request
from ..stream import count_units
from .base import Policy, State, finish_request, finished_text, whole_units


class WaitKPolicy(Policy):
    name = "wait-k"
    summary = "start after k reads, then keep pace"

    def __init__(self, k: int = 3, chunk: int = 1, few_shot: bool = True):
        if k < 1:
            raise ValueError("wait-k needs k >= 1")
        self.k, self.chunk, self.few_shot = k, chunk, few_shot

    def allowed_units(self, state: State) -> int:
        lag_units = (self.k - 1) * self.chunk
        if state.read_units <= lag_units:
            return 0
        return math.ceil(state.pair.unit_ratio * (state.read_units - lag_units) - 1e-9)

    def room(self, state: State) -> int:
        """Target units the schedule still allows at this step."""
        return self.allowed_units(state) - count_units(state.target, state.pair.target_unit)

    def plan(self, state: State) -> Request | None:
        if state.source_finished:
            return finish_request(state, self.few_shot)
        prompt = seqpo_prompt(state.pair, state.source_prefix, state.target)
        unit = state.pair.target_unit
        todo = self.room(state)
        if todo <= 0:
            return None
        # the schedule says write now: the line may not end first (a model fine-tuned on the SeqPO
        # format would otherwise answer a forced write with its own wait)
        return Request(complete_prefix(state.pair) if self.few_shot else "", prompt, max_new_tokens=4 * todo + 4,
                       max_units=todo, unit=unit, must_write=True)

    def segment(self, state: State, completion: Completion) -> str:
        if state.source_finished:
            return finished_text(state, completion)
        return whole_units(completion, state.pair.target_unit, limit=self.room(state))

    def settings(self) -> dict:
        return {"policy": self.name, "k": self.k, "few_shot": self.few_shot}
