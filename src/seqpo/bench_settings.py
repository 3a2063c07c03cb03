"""The settings of `seqpo bench` (a config dataclass beside its command, as TRL's): torch-free, so
`seqpo --help` builds its flags without loading a model runtime."""

from __future__ import annotations

from dataclasses import dataclass

from .bundled import MODEL_HELP
from .config import DeviceSettings, check_at_least, setting
from .errors import InputFileError
from .languages import parse_pair
from .prompts import check_supported


@dataclass
class BenchSettings(DeviceSettings):
    pair: str = setting("en-zh", "language pair, source-target")
    src: str = setting(None, "source file, one sentence per line")
    limit: int = setting(4, "benchmark the first N non-empty lines")
    policy: str = setting("llm", "streaming policy timed in every mode", choices=["wait-k", "llm"])
    k: int = setting(3, "wait-k: reads before the first write")
    chunk: int = setting(1, "source units per read")
    slot: int = setting(16, "slots decoding: slot length in tokens")
    batch_size: int = setting(8, "sentences decoded together")
    group: int = setting(5, "rollouts per source for the fork comparison (0: skip it)")
    modes: str = setting("reencode,append,slots", "comma-separated decoding modes to time")
    lookahead: int = setting(8, "append/slots: also time them with look-ahead of up to this many reads, with "
                             "write-ahead, and with both (same output, checked; 0: write-ahead only)")
    model: str = setting(None, f"causal LM: {MODEL_HELP}")
    adapter: str = setting("none", "peft adapter for the policy ('default': the one shipped for the pair with the "
                           "bundled model; 'none': the bare model with few-shot examples)")
    repeats: int = setting(1, "time every row this many times, in rounds; the table shows medians")

    def validate(self):
        pair = check_supported(parse_pair(self.pair))
        if not self.src:
            raise InputFileError("--src is required")
        check_at_least(self, 1, "limit", "chunk", "slot", "batch_size", "repeats")
        check_at_least(self, 0, "group", "lookahead")
        return pair
