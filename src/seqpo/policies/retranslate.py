"""Re-translation (Arivazhagan et al., 2020, "Re-translation versus Streaming for Simultaneous
Translation", IWSLT; Niehues et al., 2018): after every read the whole source prefix is translated
again from scratch and the new translation replaces the one shown, so earlier output may change.

Each step asks what the offline policy's final step asks (`finish_request`: the same prompt, few-shot
block and length cap), on the prefix read so far and with an empty target. Its answer is the whole
display (`Policy.retranslates`); the driver records it as `Step.display`, and latency dates each final
unit by the update that last rewrote it (`stream.retranslation_delays`). Flicker is
normalized erasure (`metrics.erasure`).
"""

from __future__ import annotations

from dataclasses import replace

from ..requests import Completion, Request
from .base import SENTENCE_END, Policy, State, finish_request, finished_text


class RetranslatePolicy(Policy):
    name = "retranslate"
    summary = "translate the whole prefix again after every read; what is shown may change"
    retranslates = True

    def __init__(self, few_shot: bool = True):
        self.few_shot = few_shot

    def plan(self, state: State) -> Request | None:
        # from scratch: the display so far (state.target) is neither in the prompt nor in the cap
        return finish_request(replace(state, target=""), self.few_shot)

    def segment(self, state: State, completion: Completion) -> str:
        text = finished_text(state, completion)
        if state.source_finished:
            return text
        # A prefix is translated as a whole sentence and closed with a full stop; mid-sentence that stop
        # is always taken back at the next update, flicker that says nothing about the translation.
        return text.rstrip(SENTENCE_END).rstrip()
