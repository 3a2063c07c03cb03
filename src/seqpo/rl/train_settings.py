"""The settings of `seqpo train` (TRL-style, a config dataclass beside its trainer): every field
with its default and help line, checked once (`validate`). Torch-free, so `seqpo --help` loads
it without the trainer.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..bundled import MODEL_HELP
from ..config import BARE_MODEL, AdapterChoice, DeviceSettings, check_at_least, setting
from ..engine import MODES, PREFIX_CACHED_MODE, REFERENCE_MODE, engine_class
from ..errors import InputFileError, MissingExtraError, SettingsError
from ..languages import LanguagePair, parse_pair
from ..model_names import is_bundled, shipped_adapter_dir
from ..prompts import check_supported

# pairs in between.
DEFAULT_BETA = {"en-zh": 0.02, "zh-en": 0.1}
OTHER_BETA = 0.04


@dataclass
class TrainSettings(DeviceSettings, AdapterChoice):
    pair: str = setting("en-zh", "language pair, source-target")
    src: str = setting(None, "training sources, one sentence per line")
    ref: str = setting(None, "training references, aligned with --src")
    out: str = setting(None, "run folder (log, checkpoints, final adapter); a re-run resumes it")
    model: str = setting(None, f"base causal LM: {MODEL_HELP}")
    adapter: str = setting(None, "LoRA adapter to start from (the SFT policy): a folder, 'sft' (the SFT adapter "
                           "shipped for the pair, bundled model only), or 'none' (a fresh LoRA on the bare model). "
                           "Unset = 'sft'; an error where no SFT adapter ships for the pair and model")
    few_shot: str = setting("auto", "few-shot examples in the prompt: auto = only without an adapter",
                            choices=["auto", "yes", "no"])
    chunk: int = setting(1, "source units per read; also the latency truncation m")
    format: str = setting(REFERENCE_MODE, "the format the policy is trained in, named by the decoding that runs "
                          "it: reencode (the SeqPO prompt per read; cached names the same format; rollouts per "
                          "--rollouts), append or slots (rollouts on that zero-recompute engine, the update over "
                          "one sequence per episode: its transcript as the engine ran it)", choices=list(MODES))
    slot: int = setting(16, "slots format: source slot length in tokens (as seqpo sft --slot; decode with the same)")
    steps: int = setting(100, "training steps (one AdamW update each)")
    sources: int = setting(4, "training sentences per step (split across processes)")
    group: int = setting(5, "rollouts per sentence (GRPO group size B)")
    temperature: float = setting(1.0, "sampling temperature of rollouts")
    max_step_tokens: int = setting(60, "most new tokens a rollout step may write")
    lr: float = setting(2e-5, "AdamW learning rate (LoRA; the paper's 1e-6 is for full fine-tuning)")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    beta: float = setting(None, "KL weight to the reference (default 0.02 en-zh, 0.1 zh-en, 0.04 others)")
    clip_eps: float = setting(0.2, "PPO clip range of the importance ratio")
    updates_per_batch: int = setting(1, "AdamW updates per rollout batch (>1 makes the ratio clip matter)")
    micro_batch: int = setting(16, "step samples per forward pass; gradients of all micro-batches of a step "
                               "are accumulated into one update")
    max_grad_norm: float = setting(1.0, "gradient clipping (0: off)")
    reward: str = setting("seqpo", "reward: seqpo (lambda*q - L') or hierarchical (quality threshold first)",
                          choices=["seqpo", "hierarchical"])
    quality: str = setting("chrf", "sentence quality metric", choices=["chrf", "bleu", "comet"])
    comet: str = setting(None, "local COMET checkpoint (for --quality comet)")
    lam: float = setting(2.0, "lambda: weight of quality against latency")
    no_normalize: bool = setting(False, "ablation: do not normalise q and L within the group")
    no_truncate: bool = setting(False, "ablation: do not truncate latency at m")
    order: str = setting("normalize-first", "normalise then truncate (paper) or truncate then normalise",
                         choices=["normalize-first", "truncate-first"])
    threshold: float = setting(30.0, "hierarchical reward: quality (0-100) to clear before latency counts")
    lora_r: int = setting(16, "LoRA rank of the trained adapter")
    lora_layers: int = setting(0, "train the LoRA in the top N layers only (0: every layer): the backward pass "
                               "stops below them, so the update costs less; the rollouts cost the same")
    save_every: int = setting(10, "checkpoint every N steps")
    eval_every: int = setting(0, "evaluate on --dev-src/--dev-ref every N steps (0: only at the end)")
    dev_src: str = setting(None, "dev sources for periodic evaluation")
    dev_ref: str = setting(None, "dev references")
    dev_limit: int = setting(20, "dev sentences per evaluation")
    limit: int = setting(None, "use only the first N training sentences")
    max_source_units: int = setting(None, "train only on sentences of at most N source units (words; characters "
                                    "for zh/ja): the cost of an episode grows with the square of its length")
    bf16: str = setting("auto", "bf16 autocast for the update: auto (if supported), yes, no",
                        choices=["auto", "yes", "no"])
    seed: int = setting(0, "random seed (data order and sampling)")
    rollout_backend: str = setting("hf", "rollout generation: hf (transformers) or vllm (GPU, optional "
                                   "extra; imported only when chosen)", choices=["hf", "vllm"])
    rollouts: str = setting(PREFIX_CACHED_MODE, "hf rollouts: cached (each step runs only what its prompt does not "
                            "share with the episode's previous one) or generate (transformers generate on "
                            "every whole prompt; the original loop). Same prompts and distribution",
                            choices=[PREFIX_CACHED_MODE, "generate"])
    update: str = setting("tree", "update layout: tree (the step samples of a group as one prefix tree, each "
                          "shared token run once) or rows (every step sample a padded row; the original "
                          "loop). Same loss and gradient", choices=["tree", "rows"])
    tree_tokens: int = setting(1024, "tree update (and the append/slots formats' episode sequences): most tokens "
                               "per forward pass (attention grows with its square)")

    # the start is the SFT policy: by default the pair's shipped SFT adapter, not a shipped SeqPO one
    default_stage: ClassVar[str | None] = "sft"

    def __post_init__(self):
        unset = self.adapter is None
        self.resolve_adapter()
        # unset means the pair's shipped SFT adapter; where none ships, validate() refuses instead of
        # training from the bare model unasked (that is --adapter none)
        self.start_missing = unset and self.adapter != str(shipped_adapter_dir(self.pair, "sft"))

    def validate(self) -> LanguagePair:
        pair = check_supported(parse_pair(self.pair))
        if self.start_missing:
            where = f"for {pair} on the bundled model" if is_bundled(self.model) else f"for --model {self.model}"
            raise SettingsError(f"no SFT adapter ships {where}, and seqpo train starts from one: pass --adapter DIR "
                                "(e.g. from seqpo sft), or --adapter none to train a fresh LoRA on the bare model")
        for name in ("src", "ref", "out"):
            if not getattr(self, name):
                raise InputFileError(f"--{name} is required")
        check_at_least(self, 1, "steps", "sources", "chunk", "micro_batch", "save_every", "updates_per_batch",
                       "max_step_tokens", "tree_tokens", "slot")
        if self.incremental() and (self.rollouts != PREFIX_CACHED_MODE or self.update != "tree"
                                   or self.rollout_backend != "hf"):
            raise SettingsError(f"--format {self.format} samples on its own engine and updates one sequence per "
                                "episode: --rollouts, --update and --rollout-backend apply to the re-encode format")
        check_at_least(self, 0, "lora_layers")
        if self.group < 2:
            raise SettingsError("--group must be at least 2 (advantages are relative within a group)")
        if self.temperature <= 0:
            raise SettingsError("--temperature must be positive (rollouts are sampled)")
        if bool(self.dev_src) != bool(self.dev_ref):
            raise SettingsError("--dev-src and --dev-ref go together")
        if self.quality == "comet" and not self.comet:
            raise SettingsError("--quality comet needs --comet PATH")
        if self.rollout_backend == "vllm":
            if importlib.util.find_spec("vllm") is None:
                raise MissingExtraError("--rollout-backend vllm needs vLLM on a CUDA machine: pip install -e '.[vllm]' "
                                        "in the seqpo clone")
        return pair

    def incremental(self) -> bool:
        """The format extends one cache per episode (append, slots): rollouts on its engine, the
        update over each episode's transcript."""
        return engine_class(self.format).incremental

    def kl_beta(self, pair: LanguagePair) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA.get(str(pair), OTHER_BETA)


def start_name(adapter: str | None, pair) -> str | None:
    """What `--adapter` takes to select the start policy: 'sft' for the pair's shipped SFT adapter."""

    if adapter and Path(adapter).resolve() == shipped_adapter_dir(str(pair), "sft").resolve():
        return "sft"
    return adapter or BARE_MODEL

