"""The settings of `seqpo sft` (a config dataclass beside its trainer, as TRL's): torch-free, so
`seqpo --help` builds its flags without loading the trainer."""

from __future__ import annotations

from dataclasses import dataclass

from .bundled import MODEL_HELP
from .config import DeviceSettings, setting


@dataclass
class SFTSettings(DeviceSettings):
    pairs: str = setting(None, "partial-translation examples (JSONL from `seqpo data partial`)")
    pair: str = setting("en-zh", "language pair of the examples, source-target")
    out: str = setting(None, "output folder: checkpoints while training, the final peft adapter at the top")
    model: str = setting(None, f"base causal LM: {MODEL_HELP}")
    epochs: float = setting(1.0, "passes over the examples")
    max_steps: int = setting(-1, "stop after this many optimizer steps (-1: run the epochs)")
    lr: float = setting(2e-4, "AdamW learning rate (LoRA)")
    batch_size: int = setting(8, "examples per device per step")
    grad_accum: int = setting(1, "gradient accumulation steps")
    lora_r: int = setting(16, "LoRA rank")
    lora_alpha: int = setting(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = setting(0.05, "LoRA dropout")
    lora_targets: str = setting("q_proj,k_proj,v_proj,o_proj", "comma-separated module names to adapt")
    max_length: int = setting(256, "line format: longest example in tokens (longer ones keep their end); "
                             "slots episodes are never cut")
    save_steps: int = setting(50, "checkpoint every N steps (resume picks up the last one)")
    logging_steps: int = setting(10, "log loss every N steps")
    bf16: str = setting("auto", "bf16 mixed precision: auto (if the hardware supports it), yes, no",
                        choices=["auto", "yes", "no"])
    seed: int = setting(0, "random seed")
    limit: int = setting(None, "use only the first N examples (slots format: the first N sentences)")
    max_wait_share: float = setting(0.5, "at most this share of examples may be waits (extra waits are "
                                    "dropped at random; slots format: their loss is); 1 keeps all")
    format: str = setting("line", "training format: line (the re-encode prompt per read, for --decoding "
                          "reencode) or slots (one sequence per sentence, for --decoding slots)",
                          choices=["line", "slots"])
    slot: int = setting(16, "slots format: source slot length in tokens (use the same --slot to decode)")
