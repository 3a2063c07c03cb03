"""What a policy asks of a model and what it gets back: plain records, free of torch, so the policies
(and anything that only builds or reads requests) import without loading a model runtime."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Request:
    prefix: str  # shared block, KV-cached (instructions + few-shot examples)
    prompt: str  # this step's own text, appended after the prefix
    max_new_tokens: int = 60
    max_units: int | None = None  # stop once this many complete target units were written
    unit: str = "word"
    stop_at_newline: bool = True  # the SeqPO format ends a segment with a newline
    must_write: bool = False  # the last step: the line may not end before something is written
    # peft adapter to run on (a model holding several named adapters, `model.load_model_adapters`):
    # None = whatever the model has active (bare for a plain model), NO_ADAPTER = adapters disabled
    adapter: str | None = None


NO_ADAPTER = "none"  # Request.adapter: run on the base model with every adapter disabled


@dataclass
class Completion:
    text: str  # up to (not including) the first newline
    new_tokens: int
    elapsed_ms: float  # wall time of the batch this request ran in
    hit_newline: bool  # the model ended the line itself (as opposed to running out of tokens)
    token_ids: list[int] | None = None  # the generated tokens (for training on rollouts)
    prompt_ids: list[int] | None = None  # prefix + prompt tokens exactly as the model saw them
    logprobs: list[float] | None = None  # of token_ids under the sampling distribution (sampling only)


@dataclass
class Ahead:
    """A later read the model side may take in the same forward pass as the current one, in case
    every read before it waits (look-ahead; the source must already be known, as in eval and
    rollouts)."""

    chunk: str
    last: bool
    request: Request | None  # None: the policy waits there without asking the model
