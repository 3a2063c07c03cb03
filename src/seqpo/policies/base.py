"""The policy interface: given what has been read and written, run the model or wait.

As in SimulEval's agents, a policy never reads files, prints or times itself; the driver
(`seqpo.simulate`) owns I/O and timing. Unlike SimulEval, a policy returns a *request* instead of
calling the model itself, so the driver can batch the requests of many episodes into one forward
pass (evaluation sets, GRPO groups, server sessions).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..languages import LanguagePair
from ..prompts import complete_prefix, seqpo_prompt
from ..requests import Completion, Request
from ..stream import count_units, join_units, split_units


SENTENCE_END = ".。!！?？"


@dataclass
class State:
    """What a policy knows at one step."""

    pair: LanguagePair
    source_prefix: str  # everything read so far
    read_units: int  # source units read so far
    source_finished: bool  # the whole source is known: this step must finish the sentence
    target: str  # written so far
    step: int  # 1-based index of this read


def final_budget(state: State) -> int:
    """Token budget for finishing a sentence: generous for the expected target length."""
    expected = math.ceil(state.read_units * state.pair.unit_ratio)
    remaining = max(0, expected - count_units(state.target, state.pair.target_unit))
    return min(512, 16 + 3 * remaining)  # ~2 tokens per word, ~1 per character, plus slack


def finish_request(state: State, few_shot: bool = True) -> Request:
    """The last step: translate the rest of the sentence.

    Small base models sometimes loop ("3D3D3D..."); capping the whole target at 1.5x the
    expected length (+4 source units' worth) bounds the damage and the time it costs.
    """
    unit = state.pair.target_unit
    cap = math.ceil(state.pair.unit_ratio * (1.5 * state.read_units + 4))
    todo = max(1, cap - count_units(state.target, unit))
    return Request(complete_prefix(state.pair) if few_shot else "",
                   seqpo_prompt(state.pair, state.source_prefix, state.target),
                   max_new_tokens=final_budget(state), max_units=todo, unit=unit,
                   must_write=state.read_units > 0)


def finished_text(state: State, completion: Completion) -> str:
    return whole_units(completion, state.pair.target_unit, limit=None, final=True)


def whole_units(completion: Completion, unit: str, limit: int | None = None, final: bool = False) -> str:
    """The complete target units of a completion: a word cut off by the token limit is dropped
    (except at the final step, where nothing more will come)."""
    units = split_units(completion.text.replace("\ufffd", ""), unit)
    ended = completion.hit_newline or final
    if limit is not None and len(units) > limit:
        units, ended = units[:limit], True
    if not ended and unit == "word" and units:
        units = units[:-1]
    text = join_units(units, unit)
    if not final:
        # A model shown a source prefix translates it as if it were a whole sentence and closes it
        # with a full stop, after which it believes the translation is done. Mid-sentence, a
        # sentence end is never safe to write.
        text = text.rstrip(SENTENCE_END).rstrip()
    return text


class Policy(ABC):
    name: str = "policy"
    summary: str = ""  # what the policy does, in a few words (`seqpo --help` lists it)
    few_shot: bool = True  # prepend few-shot examples (base models); adapters know the format
    # re-translation: `segment` returns the whole translation to show, replacing the previous one
    # (recorded as `Step.display`), instead of a segment appended to the target
    retranslates: bool = False

    @abstractmethod
    def plan(self, state: State) -> Request | None:
        """A generation request for this step, or None to wait without running the model."""

    @abstractmethod
    def segment(self, state: State, completion: Completion) -> str:
        """Turn the model's completion into the segment written at this step ("" = wait)."""

    def settings(self) -> dict:
        return {"policy": self.name, "few_shot": self.few_shot}
