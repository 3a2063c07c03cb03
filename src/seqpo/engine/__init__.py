"""The streaming engine: four decoding modes, one class each, all `model_steps.ModelSteps`:

- `reencode` (`reencode.py`): each step re-runs its whole prompt. The baseline and reference output.
- `cached` (`cached.py`): the same prompts and the same computation as `reencode`, with prefix
  caching: a step runs only what its prompt does not share with the episode's previous one.
- `append` (`append.py`): one running transcript per episode, only ever extended.
- `slots` (`slots.py`): the SeqPO line format with the source at reserved positions (ExPosST
  zero-recompute caching, Shang et al., arXiv 2603.14903).

`reencode` and `cached` build on what every mode shares (`decoder.Decoder`: the model, sampling, a
step's end); `append` and `slots` extend the row cache (`rows.RowCacheEngine`: episodes as rows of
one batched cache), whose look-ahead and write-ahead (`early.py`) they share.

Mode names pick a class here and nowhere else: `ENGINES` below is the one list (commands take
their `--decoding` choices from `MODES`), and what other code needs to know about a mode it asks the
class (`engine_class(mode).takes_chat_template`, ...). This module is free of torch: a mode's class
is imported when first asked for, so settings can name and check modes without loading a model
runtime.
"""

from __future__ import annotations

import importlib

from ..model_steps import CompleterSteps, ModelSteps
from .episode import EpisodeRow, SourceRegionFullError

# decoding mode (`--decoding`) -> "module.Class" of this package that runs it; a new mode is a
# class plus one line here
ENGINES: dict[str, str] = {
    "reencode": "reencode.ReencodeEngine",
    "cached": "cached.CachedEngine",
    "append": "append.AppendEngine",
    "slots": "slots.SlotsEngine",
}
MODES = tuple(ENGINES)
REFERENCE_MODE = "reencode"  # re-runs every prompt: the reference output (a plain Generator is this mode)
PREFIX_CACHED_MODE = "cached"  # the same computation and output, prefix-cached: the default (`--decoding`) and rollouts


def engine_class(mode: str) -> type[ModelSteps]:
    """The engine class of a decoding mode (`--decoding`); imports it (and torch) on first use."""
    if mode not in ENGINES:
        raise ValueError(f"unknown decoding mode '{mode}' (choose from {', '.join(MODES)})")
    module, name = ENGINES[mode].split(".")
    # imported here, not at the top: naming and checking a mode must not load torch (start-up cost)
    return getattr(importlib.import_module(f".{module}", __name__), name)


def modes_where(**capabilities: bool) -> tuple[str, ...]:
    """The modes whose classes have these capabilities (`modes_where(incremental=False)`)."""
    return tuple(m for m in MODES if all(getattr(engine_class(m), k) == v for k, v in capabilities.items()))


def engine_for(model, tokenizer, mode: str = REFERENCE_MODE, slot: int = 16, **settings) -> ModelSteps:
    """An engine of `mode` on a model and its tokenizer; `settings` are the engine's (batch_size,
    do_sample, temperature, top_p, few_shot, lookahead, write_ahead, chat)."""
    return engine_class(mode)(model, tokenizer, slot, **settings)


def make_engine(loaded, mode: str = REFERENCE_MODE, slot: int = 16, batch_size: int = 8, few_shot: bool = True,
                lookahead: int = 0, write_ahead: bool = False, **sampling) -> ModelSteps:
    """An engine on a loaded model; its chat format (`LoadedModel.chat`) applies in the modes that
    re-encode the SeqPO prompt (append and slots have their own formats). A model with a completer of
    its own (`--quantize gguf`: llama.cpp, which reuses the cached prefix of each prompt itself) runs
    reencode and cached through it, greedy."""
    cls = engine_class(mode)
    if getattr(loaded.model, "completer", None) is not None:
        if cls.incremental or sampling.get("do_sample"):
            raise ValueError(f"{type(loaded.model).__name__} runs greedy reencode/cached decoding, not {mode}")
        return CompleterSteps(loaded.model.completer(loaded.tokenizer, batch_size, loaded.chat))
    chat = loaded.chat if cls.takes_chat_template else None
    return cls(loaded.model, loaded.tokenizer, slot=slot, batch_size=batch_size, few_shot=few_shot,
               lookahead=lookahead, write_ahead=write_ahead, chat=chat, **sampling)


__all__ = ["ENGINES", "EpisodeRow", "MODES", "PREFIX_CACHED_MODE", "REFERENCE_MODE", "SourceRegionFullError",
           "engine_class", "engine_for", "make_engine", "modes_where"]
