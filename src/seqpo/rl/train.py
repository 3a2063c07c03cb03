"""`seqpo train`: SeqPO-SiMT policy optimisation (multi-step GRPO, fused quality/latency reward).

One training step: take `--sources` training sentences, sample `--group` streaming episodes of
each with the current policy (rollout.py), score each episode (sentence quality, AL), turn the
group's scores into rewards (reward.py) and advantages, and make one AdamW update on every token
sampled in every step of every episode (grpo.py).

Files in OUT:
  settings.json        the settings of the run (a re-run with other settings is refused)
  log.jsonl            one line per step (reward, quality, AL, LAAL, KL, wait fraction, tokens/s);
                       eval lines carry "eval" with the dev scores
  checkpoints/step-N/  the trained LoRA, AdamW state, RNG states: a re-run resumes exactly there
  eval/step-N/         `seqpo eval` output on the dev file (--dev-src/--dev-ref every --eval-every)
  adapter_config.json, adapter_model.safetensors, seqpo.json   the final adapter (--adapter OUT)

The start adapter (SFT) is merged into the network's weights and a fresh LoRA is trained on top,
so the KL reference (that LoRA disabled) is the start policy itself. The final adapter in OUT puts
both side by side (rank r_sft + r_rl) as one standard peft adapter for the original base model.

Several GPUs: `accelerate launch -m seqpo.cli train ...`. accelerate wraps the model for
data-parallel training; each process samples rollouts for its share of the step's sources, and the
token-level loss is normalised by the token count of all processes together.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from ..bundled import MODEL_HELP
from ..config import BARE_MODEL, AdapterChoice, DeviceSettings, check_at_least, setting
from ..engine import PREFIX_CACHED_MODE, REFERENCE_MODE, engine_for
from ..errors import InputFileError, MissingExtraError, SettingsError
from ..evaluate import EvalSettings, evaluate
from ..files import load_parallel
from ..generation import Generator, line_end_ids
from ..languages import LanguagePair, parse_pair
from ..model import LoadedModel, is_bundled, shipped_adapter_dir, training_device, use_bf16, uses_chat_template
from ..policies.llm import LLMPolicy
from ..prompts import check_supported
from ..resume import check_run_settings, read_complete_jsonl, write_atomic
from ..slots import sliding_window
from ..stream import count_units
from .grpo import completion_logprobs, flatten, grpo_token_loss, make_batches, make_trees, tree_logprobs
from .lora import (checkpoint_dir, export_adapter, latest_checkpoint, load_policy_model, save_checkpoint,
                   set_rng_state)
from .reward import advantages, group_rewards
from .rollout import sample_rollouts, score_rollouts

log = logging.getLogger(__name__)

# KL weight to the reference per pair (SeqPO-SiMT, arXiv 2505.20622: 0.02 En->Zh, 0.1 Zh->En); other
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
    tree_tokens: int = setting(1024, "tree update: most tokens per forward pass (attention grows with its square)")

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
                       "max_step_tokens", "tree_tokens")
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

    def kl_beta(self, pair: LanguagePair) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA.get(str(pair), OTHER_BETA)


def _start_name(adapter: str | None, pair) -> str | None:
    """What `--adapter` takes to select the start policy: 'sft' for the pair's shipped SFT adapter."""

    if adapter and Path(adapter).resolve() == shipped_adapter_dir(str(pair), "sft").resolve():
        return "sft"
    return adapter or BARE_MODEL


def step_items(n: int, step: int, per_step: int, seed: int) -> list[int]:
    """Indices of the training sentences of `step`: consecutive slices of seeded permutations,
    one per epoch. A pure function of the step, so a resumed run needs no data-loader state."""
    out = []
    pos = step * per_step
    while len(out) < per_step:
        epoch, offset = divmod(pos, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        take = order[offset : offset + per_step - len(out)]
        out += take
        pos += len(take)
    return out


# -- setup and the end of a run --------------------------------------------------------------------

def _training_sentences(settings: TrainSettings, pair) -> tuple[list[str], list[str], list[int]]:
    """(sources, references, indices of the sentences to train on): non-empty, within --max-source-units."""

    sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    usable = [i for i, s in enumerate(sources) if s.strip() and references[i].strip() and
              (settings.max_source_units is None or count_units(s, pair.source_unit) <= settings.max_source_units)]
    if not usable:
        raise InputFileError(f"{settings.src} has no non-empty training sentences"
                             + (f" of at most {settings.max_source_units} source units" if settings.max_source_units else ""))
    if settings.dev_src:
        load_parallel(settings.dev_src, settings.dev_ref)  # fail now, not after an hour of training
    return sources, references, usable


@dataclass
class _Run:
    """What setup hands the loop: one process of the run, the model three ways, its optimizer."""

    accelerator: Any
    loaded: Any  # model.LoadedModel: tokenizer, name, chat format
    wrapped: Any  # the model as accelerate wraps it (DDP): the trained forward and backward
    model: Any  # the same model unwrapped: rollouts, the KL reference (LoRA disabled), checkpoints
    optimizer: Any
    trainable: list
    done: int  # steps a checkpoint already holds (0 for a fresh run)
    vllm: Any = None  # the vLLM rollout engine (--rollout-backend vllm)


def _start(settings: TrainSettings, out: Path) -> _Run:
    """The process group (accelerate), the settings checked against the folder's, the policy model
    and its optimizer, resumed from the latest checkpoint when there is one."""
    from accelerate import Accelerator  # start-up cost: ~1 s; only a training run needs it

    recorded = {k: v for k, v in asdict(settings).items()
                if k not in ("out", "steps", "save_every", "eval_every", "dev_limit", "rollout_backend", "rollouts",
                             "update", "tree_tokens", "device")}  # how it runs, not what it computes
    device_name = training_device(settings.device)
    bf16 = use_bf16(settings.bf16, device_name)
    try:
        accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=device_name == "cpu")
    except ValueError as exc:  # accelerate keeps one precision per process (a second run in a notebook)
        raise SettingsError(f"--bf16 differs from an earlier run in this process: {str(exc).splitlines()[0]}") from exc
    if accelerator.is_main_process:
        # the chat template as resolved (runs from before it had none)
        recorded["chat_template"] = "on" if uses_chat_template(settings.chat_template, settings.model, REFERENCE_MODE) \
            else "off"
        check_run_settings(out / "settings.json", recorded, out, legacy={"dtype": "auto", "chat_template": "off"})
    accelerator.wait_for_everyone()

    resume_from = latest_checkpoint(out)
    torch.manual_seed(settings.seed + accelerator.process_index)
    use_vllm = settings.rollout_backend == "vllm"
    save_base = out / "vllm-base" if use_vllm and accelerator.is_main_process else None
    loaded, model = load_policy_model(settings, resume_from, save_base, device_name)
    accelerator.wait_for_everyone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    done = 0
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=False))
        done = json.loads((resume_from / "state.json").read_text())["step"]
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if resume_from is not None:
        set_rng_state(torch.load(resume_from / f"rng-{accelerator.process_index}.pt", weights_only=False))
        log.warning("resuming %s after step %d", out, done)
    run = _Run(accelerator, loaded, wrapped, accelerator.unwrap_model(wrapped), optimizer, trainable, done)

    if accelerator.is_main_process:  # steps logged after the checkpoint we resume from are redone
        kept = [r for r in read_complete_jsonl(out / "log.jsonl") if r.get("step", 0) <= done]
        write_atomic(out / "log.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        for stale in (out / "eval").glob("step-*"):  # dev evals of those steps are redone with them
            if stale.name[5:].isdigit() and int(stale.name[5:]) > done:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()

    if use_vllm:  # optional extra, imported only when chosen
        from .vllm_backend import VLLMGenerator

        run.vllm = VLLMGenerator(out / "vllm-base", loaded.tokenizer, settings.temperature,
                                 max_lora_rank=settings.lora_r, chat=loaded.chat)
    return run


def _finish(settings: TrainSettings, pair, run: _Run, out: Path, command: str | None) -> None:
    """The final adapter in OUT (start + trained LoRA as one) and its seqpo.json."""
    export_adapter(settings, checkpoint_dir(out, settings.steps), out)
    evals = [r for r in read_complete_jsonl(out / "log.jsonl") if "eval" in r]
    (out / "seqpo.json").write_text(json.dumps({
        "pair": str(pair), "stage": "seqpo", "start": _start_name(settings.adapter, pair), "format": "seqpo",
        "base_model": run.loaded.name, "start_adapter": settings.adapter, "steps": settings.steps,
        "episodes": settings.steps * settings.sources * settings.group, "reward": settings.reward,
        "command": command,
        "dev": {"step": evals[-1]["step"], **evals[-1]["eval"], "lines": settings.dev_limit} if evals else None,
        "trained_by": "seqpo train"}, indent=2, ensure_ascii=False))


# -- one step's pieces, in the order the loop runs them ---------------------------------------------

def _step_sources(step: int, usable: list[int], sources, references, settings: TrainSettings,
                  accelerator) -> list[tuple[int, str, str]]:
    """(index, source, reference) of this process's share of the step's training sentences."""
    picked = step_items(len(usable), step - 1, settings.sources, settings.seed)
    mine = picked[accelerator.process_index :: accelerator.num_processes]
    return [(usable[i], sources[usable[i]], references[usable[i]]) for i in mine]


def _make_generator(model, tokenizer, settings: TrainSettings, batch: int, vllm=None, out: Path | None = None,
                    step: int = 0, chat=None):
    """The rollout sampler of one step: a fresh transformers Generator (its prefix cache belongs to
    the weights of this step), or the run's vLLM engine pointed at this step's LoRA."""
    if vllm is not None:
        target = out / "vllm-lora" / f"step-{step:06d}"
        model.save_pretrained(target)
        vllm.set_adapter(target, step)
        return vllm

    if settings.rollouts == PREFIX_CACHED_MODE:
        return engine_for(model, tokenizer, PREFIX_CACHED_MODE, batch_size=batch, do_sample=True,
                          temperature=settings.temperature, few_shot=settings.use_few_shot(), chat=chat)
    return Generator(model, tokenizer, batch_size=batch, do_sample=True, temperature=settings.temperature, chat=chat)


@dataclass
class _Scored:
    """A step's rollouts of this process, flat over its groups, each with its score, reward and advantage."""

    rollouts: list
    scores: list  # rollout.EpisodeScore
    rewards: list[float]
    advantages: list[float]


def _score(groups, pair, settings: TrainSettings) -> _Scored:
    """Score every rollout (quality, latency), reward it within its group (reward.py), and turn the
    group's rewards into advantages."""

    scored = _Scored([], [], [], [])
    for group in groups:
        scores = score_rollouts(group, pair.target, settings.quality, settings.comet)
        rewards = group_rewards(scores, settings)
        scored.rollouts += group
        scored.scores += scores
        scored.rewards += rewards
        scored.advantages += advantages(rewards)
    return scored


@dataclass
class _Update:
    """What the update of one step measured on this process (sums over its sampled tokens)."""

    tokens: int  # sampled tokens trained on
    update_tokens: int  # tokens through the model per forward pass (tree nodes or unpadded row tokens)
    loss: float = 0.0
    kl_sum: float = 0.0
    clipped_sum: float = 0.0
    logp_gap_sum: float = 0.0  # |teacher-forced - sampled| log-prob, summed (numerics)
    grad_norm: float | None = None


def _token_logprobs(net, batch, settings: TrainSettings, device, window, line_end):
    """(log-probs, mask, sampled log-probs, advantages) of a batch's sampled tokens, shaped for
    `grpo_token_loss`: [B, C] per padded row, or [M, 1] per (step sample, token) of a tree."""

    if settings.update == "tree":
        logps = tree_logprobs(net, batch, device, window, settings.temperature, line_end)[:, None]
        return logps, torch.ones_like(logps), batch.old_logps.to(device)[:, None], batch.advantages.to(device)
    return (completion_logprobs(net, batch, device, settings.temperature), batch.completion_mask.to(device),
            batch.old_logps.to(device), batch.advantages.to(device))


def _update(run: _Run, scored: _Scored, settings: TrainSettings, beta: float) -> _Update:
    """`--updates-per-batch` AdamW updates on every token sampled in the step (GRPO token loss)."""

    accelerator, device = run.accelerator, run.accelerator.device
    window, line_end = sliding_window(run.model), line_end_ids(run.loaded.tokenizer)
    rows = flatten(scored.rollouts, scored.advantages)
    local_tokens = sum(len(r[1]) for r in rows)
    total_tokens = int(accelerator.reduce(torch.tensor(float(local_tokens), device=device), "sum").item())
    scale = accelerator.num_processes  # DDP averages gradients over processes; the loss is a global mean
    # every process must run the same number of backward passes (DDP synchronises the last one),
    # so all split their rows into the largest count; a process with fewer rows repeats its last
    # micro-batch at weight 0
    if settings.update == "tree":
        batches = make_trees(rows, settings.tree_tokens)
        n_batches = int(accelerator.gather(torch.tensor([len(batches)], device=device)).max())
    else:
        n_batches = int(accelerator.gather(torch.tensor([-(-len(rows) // settings.micro_batch)], device=device)).max())
        batches = make_batches(rows, run.loaded.tokenizer.pad_token_id, -(-len(rows) // n_batches))
    result = _Update(local_tokens, sum(b.nodes if settings.update == "tree" else int(b.attention_mask.sum())
                                       for b in batches))
    weights = [1.0] * len(batches) + [0.0] * (n_batches - len(batches))
    batches += [batches[-1]] * (n_batches - len(batches))
    ref_cache: dict[int, torch.Tensor] = {}
    for update in range(settings.updates_per_batch):
        for i, batch in enumerate(batches):
            sync = contextlib.nullcontext() if i == len(batches) - 1 else accelerator.no_sync(run.wrapped)
            with sync, accelerator.autocast():
                logps, mask, sampled, advs = _token_logprobs(run.wrapped, batch, settings, device, window, line_end)
                if beta and i not in ref_cache:
                    with torch.no_grad(), run.model.disable_adapter():
                        ref_cache[i] = _token_logprobs(run.model, batch, settings, device, window, line_end)[0].detach()
                # one update per batch: on-policy, old = current (exactly what sampled the tokens);
                # more updates: the log-probs recorded when sampling are the old policy
                old = logps.detach() if settings.updates_per_batch == 1 else sampled
                loss, s = grpo_token_loss(logps, old, ref_cache.get(i), advs, mask, settings.clip_eps, beta,
                                          total_tokens)
                accelerator.backward(loss * scale * weights[i])
            if update == 0 and weights[i]:
                result.loss += float(loss.detach())
                result.kl_sum += s["kl_sum"]
                result.clipped_sum += s["clipped_sum"]
                result.logp_gap_sum += float(((logps.detach() - sampled).abs() * mask).sum())
        if settings.max_grad_norm:
            result.grad_norm = float(accelerator.clip_grad_norm_(run.trainable, settings.max_grad_norm))
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return result


@dataclass
class StepStats:
    """A step's sums, per process until `reduce` adds those of every process (one all-reduce)."""

    reward: float = 0.0
    reward_sq: float = 0.0
    episodes: float = 0.0
    quality: float = 0.0
    al: float = 0.0
    laal: float = 0.0
    wait_fraction: float = 0.0
    kl: float = 0.0
    clipped: float = 0.0
    logp_gap: float = 0.0
    tokens: float = 0.0
    loss: float = 0.0

    @classmethod
    def of(cls, scored: _Scored, update: _Update) -> StepStats:
        s = scored.scores
        return cls(sum(scored.rewards), sum(r * r for r in scored.rewards), len(scored.rewards),
                   sum(x.quality for x in s), sum(x.latency for x in s), sum(x.laal for x in s),
                   sum(x.wait_fraction for x in s), update.kl_sum, update.clipped_sum, update.logp_gap_sum,
                   update.tokens, update.loss)

    def reduce(self, accelerator) -> StepStats:
        names = [f.name for f in fields(self)]
        local = torch.tensor([getattr(self, n) for n in names], dtype=torch.float64, device=accelerator.device)
        return StepStats(*accelerator.reduce(local, "sum").tolist())


def _log_record(step: int, stats: StepStats, update: _Update, generator, rollout_s: float, update_s: float,
                processes: int) -> dict:
    """The step's log.jsonl line: means over all processes' episodes (reward, quality, latency) or
    sampled tokens (KL, clipping, log-prob gap)."""
    n, tok = max(1.0, stats.episodes), max(1.0, stats.tokens)
    mean_r = stats.reward / n
    return {
        "step": step,
        "reward_mean": round(mean_r, 4),
        "reward_std": round(max(0.0, stats.reward_sq / n - mean_r * mean_r) ** 0.5, 4),
        "quality": round(stats.quality / n, 3),
        "AL": round(stats.al / n, 3),
        "LAAL": round(stats.laal / n, 3),
        "wait_fraction": round(stats.wait_fraction / n, 4),
        "kl": round(stats.kl / tok, 6),
        "clipped_fraction": round(stats.clipped / tok, 4),
        "logp_gap": round(stats.logp_gap / tok, 5),  # mean |teacher-forced - sampled| log-prob (numerics)
        "loss": round(stats.loss, 6),
        "tokens": int(stats.tokens),
        "update_tokens": update.update_tokens,  # tokens through the model per forward of the update (this process)
        "rollout_tokens": getattr(generator, "tokens_processed", None),
        "tokens_per_s": round(update.tokens / rollout_s, 2) if rollout_s > 0 else None,
        "rollout_s": round(rollout_s, 2),
        "update_s": round(update_s, 2),
        "grad_norm": round(update.grad_norm, 5) if update.grad_norm is not None else None,
        "episodes": int(stats.episodes),
        "processes": processes,
    }


def _append_log(log_path: Path, lines: list[dict]) -> None:
    """Append and fsync: a line is on disk before the step's checkpoint is written."""
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in lines))
        fh.flush()
        os.fsync(fh.fileno())


def _evaluate(settings: TrainSettings, pair, loaded, model, out: Path, step: int) -> dict:
    """`seqpo eval` of the step's checkpoint on the dev file (in OUT/eval/step-N); its scores."""

    ev = EvalSettings(pair=str(pair), policy="llm", chunk=settings.chunk, model=settings.model,
                      decoding=PREFIX_CACHED_MODE,
                      adapter=str(checkpoint_dir(out, step)), few_shot="yes" if settings.use_few_shot() else "no",
                      src=settings.dev_src, ref=settings.dev_ref, limit=settings.dev_limit,
                      out=str(out / "eval" / f"step-{step:06d}"), chat_template="on" if loaded.chat else "off")
    scores = evaluate(ev, loaded=LoadedModel(model, loaded.tokenizer, loaded.name, ev.adapter, loaded.chat),
                      progress=False)
    return {k: v for k, v in scores.items() if k != "signature"}


# -- the run ---------------------------------------------------------------------------------------

def train(settings: TrainSettings, progress: bool = True, command: str | None = None) -> Path:
    """Run (or resume) `settings.steps` training steps in `settings.out`; returns that folder."""
    pair = settings.validate()
    sources, references, usable = _training_sentences(settings, pair)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _start(settings, out)
    accelerator, main = run.accelerator, run.accelerator.is_main_process
    policy = LLMPolicy(max_step_tokens=settings.max_step_tokens, few_shot=settings.use_few_shot())
    beta = settings.kl_beta(pair)

    bar = tqdm(total=settings.steps, initial=run.done, unit="step", disable=not progress or not main,
               desc=f"seqpo train {pair}", dynamic_ncols=True)
    for step in range(run.done + 1, settings.steps + 1):
        # rollouts: `group` sampled episodes of each of this process's sentences
        items = _step_sources(step, usable, sources, references, settings, accelerator)
        t0 = time.perf_counter()
        generator = _make_generator(run.model, run.loaded.tokenizer, settings, len(items) * settings.group,
                                    run.vllm, out, step, run.loaded.chat)
        groups = sample_rollouts(generator, policy, pair, settings.chunk, items, settings.group)
        rollout_s = time.perf_counter() - t0
        # rewards and advantages, within each group
        scored = _score(groups, pair, settings)
        # loss and update
        t1 = time.perf_counter()
        update = _update(run, scored, settings, beta)
        update_s = time.perf_counter() - t1
        # log: the step's lines (and its dev eval) are logged before its checkpoint: a kill in
        # between leaves lines after the checkpoint, which a resume drops and redoes, never a
        # checkpointed step without its line
        stats = StepStats.of(scored, update).reduce(accelerator)
        record = _log_record(step, stats, update, generator, rollout_s, update_s, accelerator.num_processes)
        if main:
            lines = [record]
            if settings.dev_src and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
                lines.append({"step": step, "eval": _evaluate(settings, pair, run.loaded, run.model, out, step)})
            _append_log(out / "log.jsonl", lines)
            bar.set_postfix(r=f"{record['reward_mean']:.2f}", q=f"{record['quality']:.1f}", AL=f"{record['AL']:.2f}",
                            wait=f"{record['wait_fraction']:.2f}")
            bar.update(1)
        # checkpoint
        if step % settings.save_every == 0 or step == settings.steps:
            save_checkpoint(out, step, run.model, run.optimizer, accelerator)
        accelerator.wait_for_everyone()
    bar.close()
    if main:
        _finish(settings, pair, run, out, command)
    # every process leaves together and tears down its process group: a process that exits while the
    # others still hold gloo's threads dies with "terminate called without an active exception"
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out
