"""One streaming decoding engine, four modes, one class each:

- `reencode` (`reencode.py`): each step re-runs its whole prompt. The baseline and reference output.
- `cached` (`cached.py`): the same prompts and the same computation as `reencode`, with prefix
  caching: a step runs only what its prompt does not share with the episode's previous one.
- `append` (`append.py`): one running transcript per episode, only ever extended.
- `slots` (`slots.py`): the SeqPO line format with the source at reserved positions (ExPosST
  zero-recompute caching, Shang et al., arXiv 2603.14903).

The interface (`base.StreamingEngine`) is the same for all of them; look-ahead and write-ahead
(`early.py`) apply to the incremental modes (append, slots). What other code needs to know about a
mode it asks the class (`engine_class(mode).takes_chat_template`, ...), so mode names pick a class
here and nowhere else.
"""

from __future__ import annotations

from .append import AppendEngine
from .base import StreamingEngine
from .cached import CachedEngine
from .episode import Ahead, EpisodeRow, SourceRegionFullError
from .reencode import ReencodeEngine
from .slots import SlotsEngine

ENGINES: dict[str, type[StreamingEngine]] = {cls.mode: cls for cls in (ReencodeEngine, CachedEngine, AppendEngine,
                                                                       SlotsEngine)}
MODES = tuple(ENGINES)


def engine_class(mode: str) -> type[StreamingEngine]:
    """The engine class of a decoding mode (`--decoding`)."""
    if mode not in ENGINES:
        raise ValueError(f"unknown decoding mode '{mode}' (choose from {', '.join(MODES)})")
    return ENGINES[mode]


def engine_for(model, tokenizer, mode: str = "reencode", slot: int = 16, **settings) -> StreamingEngine:
    """An engine of `mode` on a model and its tokenizer; `settings` are the engine's (batch_size,
    do_sample, temperature, top_p, few_shot, lookahead, write_ahead, chat)."""
    return engine_class(mode)(model, tokenizer, slot, **settings)


def make_engine(loaded, mode: str = "reencode", slot: int = 16, batch_size: int = 8, few_shot: bool = True,
                lookahead: int = 0, write_ahead: bool = False, **sampling) -> StreamingEngine:
    """An engine on a loaded model; its chat format (`LoadedModel.chat`) applies in the modes that
    re-encode the SeqPO prompt (append and slots have their own formats)."""
    cls = engine_class(mode)
    chat = loaded.chat if cls.takes_chat_template else None
    return cls(loaded.model, loaded.tokenizer, slot=slot, batch_size=batch_size, few_shot=few_shot,
               lookahead=lookahead, write_ahead=write_ahead, chat=chat, **sampling)


__all__ = ["Ahead", "AppendEngine", "CachedEngine", "ENGINES", "EpisodeRow", "MODES", "ReencodeEngine", "SlotsEngine",
           "SourceRegionFullError", "StreamingEngine", "engine_class", "engine_for", "make_engine"]
