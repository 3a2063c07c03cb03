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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import DeviceSettings, setting
from ..engine import StreamingEngine
from ..errors import InputFileError, MissingExtraError, SettingsError
from ..evaluate import EvalSettings, evaluate
from ..files import load_parallel
from ..generation import Generator, line_end_ids
from ..languages import LanguagePair, parse_pair
from ..model import (LoadedModel, load_model, quiet_peft, resolve_adapter, shipped_adapter_dir, training_device,
                     training_dtype, use_bf16, uses_chat_template)
from ..policies.llm import LLMPolicy
from ..prompts import check_supported
from ..resume import check_run_settings, read_complete_jsonl, write_atomic
from ..slots import sliding_window
from ..stream import count_units
from .grpo import completion_logprobs, flatten, grpo_token_loss, make_batches, make_trees, tree_logprobs
from .reward import advantages, hierarchical_rewards, seqpo_rewards
from .rollout import sample_rollouts, score_rollouts

log = logging.getLogger(__name__)

# KL weight to the reference per pair (MISSION.md: 0.02 En->Zh, 0.1 Zh->En); other pairs in between.
DEFAULT_BETA = {"en-zh": 0.02, "zh-en": 0.1}
OTHER_BETA = 0.04


@dataclass
class TrainSettings(DeviceSettings):
    pair: str = setting("en-zh", "language pair, source-target")
    src: str = setting(None, "training sources, one sentence per line")
    ref: str = setting(None, "training references, aligned with --src")
    out: str = setting(None, "run folder (log, checkpoints, final adapter); a re-run resumes it")
    model: str = setting(None, "base causal LM (default: the bundled Gemma-3-270M)")
    adapter: str = setting(None, "LoRA adapter to start from (the SFT policy); default: the SFT adapter shipped "
                           "for the pair on the bundled model ('sft'); 'none' = a fresh LoRA on the bare model")
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
    lora_r: int = setting(16, "LoRA rank of a fresh adapter (--adapter none)")
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
    rollouts: str = setting("cached", "hf rollouts: cached (each step runs only what its prompt does not "
                            "share with the episode's previous one) or generate (transformers generate on "
                            "every whole prompt; the original loop). Same prompts and distribution",
                            choices=["cached", "generate"])
    update: str = setting("tree", "update layout: tree (the step samples of a group as one prefix tree, each "
                          "shared token run once) or rows (every step sample a padded row; the original "
                          "loop). Same loss and gradient", choices=["tree", "rows"])
    tree_tokens: int = setting(1024, "tree update: most tokens per forward pass (attention grows with its square)")

    def __post_init__(self):
        # the start is the SFT policy: by default the pair's shipped SFT adapter, not a shipped SeqPO one
        if self.adapter is None and self.model in (None, "", "bundled", "bundled:gemma-3-270m") \
                and _has_shipped_sft(self.pair):
            self.adapter = "sft"
        self.adapter = resolve_adapter(self.adapter, self.pair, self.model)

    def validate(self) -> LanguagePair:
        pair = check_supported(parse_pair(self.pair))
        for name in ("src", "ref", "out"):
            if not getattr(self, name):
                raise InputFileError(f"--{name} is required")
        for name in ("steps", "sources", "chunk", "micro_batch", "save_every", "updates_per_batch", "max_step_tokens",
                     "tree_tokens"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
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
                raise MissingExtraError("--rollout-backend vllm needs vLLM on a CUDA machine: pip install 'seqpo[vllm]'")
        return pair

    def kl_beta(self, pair: LanguagePair) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA.get(str(pair), OTHER_BETA)

    def use_few_shot(self) -> bool:
        return self.few_shot == "yes" or (self.few_shot == "auto" and not self.adapter)


def _has_shipped_sft(pair: str) -> bool:
    return (shipped_adapter_dir(pair, "sft") / "adapter_config.json").exists()


def _start_name(adapter: str | None, pair) -> str | None:
    """What `--adapter` takes to select the start policy: 'sft' for the pair's shipped SFT adapter."""
    if adapter and Path(adapter).resolve() == shipped_adapter_dir(str(pair), "sft").resolve():
        return "sft"
    return adapter or "none"


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


def group_rewards(scores, settings: TrainSettings) -> list[float]:
    q = [s.quality for s in scores]
    lat = [s.latency for s in scores]
    if settings.reward == "hierarchical":
        return hierarchical_rewards(q, lat, [s.source_length for s in scores], settings.threshold)
    return seqpo_rewards(q, lat, settings.chunk, settings.lam, normalize=not settings.no_normalize,
                         truncate=not settings.no_truncate, order=settings.order)


# -- checkpoints ----------------------------------------------------------------------------------
# accelerate's save_state would also write the frozen 1 GB base model at every checkpoint; a LoRA run
# only needs the adapter, the optimizer and the RNG states, so those three are saved here.

def _ckpt_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    done = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, model, optimizer, accelerator, keep: int = 2) -> None:
    target = _ckpt_dir(out, step)
    tmp = target.with_name(target.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # a kill mid-save leaves only a .tmp folder, never a half checkpoint
        for old in sorted((out / "checkpoints").glob("step-??????"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# -- the run ---------------------------------------------------------------------------------------

def _check_adapter(path: Path) -> Path:
    if not (path / "adapter_config.json").exists():
        raise InputFileError(f"adapter folder {path} has no adapter_config.json")
    return path


def _load_policy_model(settings: TrainSettings, resume_from: Path | None, save_base: Path | None = None,
                       device: str = "cpu"):
    """The network being trained: the base model with the start adapter (SFT) merged into its
    weights, plus a fresh trainable LoRA ("default"). Disabling that LoRA gives exactly the start
    policy, which is the KL reference (MISSION.md: KL to the SFT reference) without a second copy."""
    from peft import LoraConfig, PeftModel, get_peft_model  # start-up cost: ~3 s to import; only training needs it

    loaded = load_model(settings.model, None, training_dtype(settings.dtype, device), "cpu",  # accelerate moves it
                        chat_template=settings.chat_template)
    base = loaded.model
    with quiet_peft():
        if settings.adapter:
            base = PeftModel.from_pretrained(base, str(_check_adapter(Path(settings.adapter)))).merge_and_unload()
        if save_base is not None and not (save_base / "config.json").exists():  # what vLLM serves
            base.save_pretrained(save_base)
            loaded.tokenizer.save_pretrained(save_base)
        if resume_from is not None:
            model = PeftModel.from_pretrained(base, str(_check_adapter(resume_from)), is_trainable=True)
        else:
            model = get_peft_model(base, LoraConfig(
                r=settings.lora_r, lora_alpha=2 * settings.lora_r, lora_dropout=0.0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
    model.eval()  # no dropout: sampled and trained log-probs come from the same function
    return loaded, model


def export_adapter(settings: TrainSettings, trained: Path, out: Path) -> None:
    """Save in `out` one standard adapter for the original base model: the start adapter and the
    trained one side by side (peft's "cat" combination: rank r1 + r2, each keeping its own scale),
    so `--adapter OUT` loads the trained policy on the bundled model like any SFT adapter."""
    from peft import PeftModel  # start-up cost: ~3 s to import; only training needs it

    if not settings.adapter:
        for f in trained.iterdir():
            if f.name.startswith("adapter_"):
                shutil.copy2(f, out / f.name)
        return
    with quiet_peft():
        base = load_model(settings.model, dtype="float32", device="cpu").model  # saved as float32, like the adapters
        model = PeftModel.from_pretrained(base, str(settings.adapter), adapter_name="start")
        model.load_adapter(str(trained), adapter_name="trained")
        model.add_weighted_adapter(["start", "trained"], [1.0, 1.0], adapter_name="default", combination_type="cat")
        model.save_pretrained(out, selected_adapters=["default"])


def _make_generator(model, tokenizer, settings: TrainSettings, batch: int, vllm=None, out: Path | None = None,
                    step: int = 0, chat=None):
    """The rollout sampler of one step: a fresh transformers Generator (its prefix cache belongs to
    the weights of this step), or the run's vLLM engine pointed at this step's LoRA."""
    if vllm is not None:
        target = out / "vllm-lora" / f"step-{step:06d}"
        model.save_pretrained(target)
        vllm.set_adapter(target, step)
        return vllm

    if settings.rollouts == "cached":
        return StreamingEngine(model, tokenizer, mode="cached", batch_size=batch, do_sample=True,
                               temperature=settings.temperature, few_shot=settings.use_few_shot(), chat=chat)
    return Generator(model, tokenizer, batch_size=batch, do_sample=True, temperature=settings.temperature, chat=chat)


def _evaluate(settings: TrainSettings, pair, loaded, model, out: Path, step: int) -> dict:
    ev = EvalSettings(pair=str(pair), policy="llm", chunk=settings.chunk, model=settings.model, decoding="cached",
                      adapter=str(_ckpt_dir(out, step)), few_shot="yes" if settings.use_few_shot() else "no",
                      src=settings.dev_src, ref=settings.dev_ref, limit=settings.dev_limit,
                      out=str(out / "eval" / f"step-{step:06d}"), chat_template="on" if loaded.chat else "off")
    scores = evaluate(ev, loaded=LoadedModel(model, loaded.tokenizer, loaded.name, ev.adapter, loaded.chat),
                      progress=False)
    return {k: v for k, v in scores.items() if k != "signature"}


def train(settings: TrainSettings, progress: bool = True, command: str | None = None) -> Path:
    from accelerate import Accelerator  # start-up cost: only training needs it

    pair = settings.validate()
    sources, references = load_parallel(settings.src, settings.ref, settings.limit)
    usable = [i for i, s in enumerate(sources) if s.strip() and references[i].strip() and
              (settings.max_source_units is None or count_units(s, pair.source_unit) <= settings.max_source_units)]
    if not usable:
        raise InputFileError(f"{settings.src} has no non-empty training sentences"
                             + (f" of at most {settings.max_source_units} source units" if settings.max_source_units else ""))
    if settings.dev_src:
        load_parallel(settings.dev_src, settings.dev_ref)  # fail now, not after an hour of training
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
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
        recorded["chat_template"] = "on" if uses_chat_template(settings.chat_template, settings.model, "reencode") \
            else "off"
        check_run_settings(out / "settings.json", recorded, out, legacy={"dtype": "auto", "chat_template": "off"})
    accelerator.wait_for_everyone()

    resume_from = latest_checkpoint(out)
    torch.manual_seed(settings.seed + accelerator.process_index)
    use_vllm = settings.rollout_backend == "vllm"
    save_base = out / "vllm-base" if use_vllm and accelerator.is_main_process else None
    loaded, model = _load_policy_model(settings, resume_from, save_base, device_name)
    accelerator.wait_for_everyone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    done = 0
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=False))
        done = json.loads((resume_from / "state.json").read_text())["step"]
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    policy_model = accelerator.unwrap_model(wrapped)
    if resume_from is not None:
        _set_rng_state(torch.load(resume_from / f"rng-{accelerator.process_index}.pt", weights_only=False))
        log.warning("resuming %s after step %d", out, done)

    log_path = out / "log.jsonl"
    if accelerator.is_main_process:  # steps logged after the checkpoint we resume from are redone
        kept = [r for r in read_complete_jsonl(log_path) if r.get("step", 0) <= done]
        write_atomic(log_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        for stale in (out / "eval").glob("step-*"):  # dev evals of those steps are redone with them
            if stale.name[5:].isdigit() and int(stale.name[5:]) > done:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()

    tokenizer = loaded.tokenizer
    vllm = None
    if use_vllm:  # optional extra, imported only when chosen
        from .vllm_backend import VLLMGenerator

        vllm = VLLMGenerator(out / "vllm-base", tokenizer, settings.temperature, max_lora_rank=settings.lora_r,
                             chat=loaded.chat)
    policy = LLMPolicy(max_step_tokens=settings.max_step_tokens, few_shot=settings.use_few_shot())
    beta = settings.kl_beta(pair)
    device = accelerator.device
    window, line_end, temperature = sliding_window(policy_model), line_end_ids(tokenizer), settings.temperature

    def scorer(net, batch):
        """(log-probs, mask, sampled log-probs, advantages) of a batch's sampled tokens, shaped for
        `grpo_token_loss`: [B, C] per padded row, or [M, 1] per (step sample, token) of a tree."""
        if settings.update == "tree":
            logps = tree_logprobs(net, batch, device, window, temperature, line_end)[:, None]
            return logps, torch.ones_like(logps), batch.old_logps.to(device)[:, None], batch.advantages.to(device)
        return (completion_logprobs(net, batch, device, temperature), batch.completion_mask.to(device),
                batch.old_logps.to(device), batch.advantages.to(device))

    bar = tqdm(total=settings.steps, initial=done, unit="step", disable=not progress or not accelerator.is_main_process,
               desc=f"seqpo train {pair}", dynamic_ncols=True)
    for step in range(done + 1, settings.steps + 1):
        picked = step_items(len(usable), step - 1, settings.sources, settings.seed)
        mine = picked[accelerator.process_index :: accelerator.num_processes]
        items = [(usable[i], sources[usable[i]], references[usable[i]]) for i in mine]

        t0 = time.perf_counter()
        generator = _make_generator(policy_model, tokenizer, settings, len(items) * settings.group, vllm, out, step,
                                    loaded.chat)
        groups = sample_rollouts(generator, policy, pair, settings.chunk, items, settings.group)
        rollout_s = time.perf_counter() - t0
        rollouts, advs, scored, reward_values = [], [], [], []
        for group in groups:
            scores = score_rollouts(group, pair.target, settings.quality, settings.comet)
            rewards = group_rewards(scores, settings)
            rollouts += group
            scored += scores
            reward_values += rewards
            advs += advantages(rewards)

        t1 = time.perf_counter()
        rows = flatten(rollouts, advs)
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
            batches = make_batches(rows, tokenizer.pad_token_id, -(-len(rows) // n_batches))
        update_tokens = sum(b.nodes if settings.update == "tree" else int(b.attention_mask.sum()) for b in batches)
        weights = [1.0] * len(batches) + [0.0] * (n_batches - len(batches))
        batches += [batches[-1]] * (n_batches - len(batches))
        stats = {"loss": 0.0, "kl_sum": 0.0, "clipped_sum": 0.0, "logp_gap_sum": 0.0}
        ref_cache: dict[int, torch.Tensor] = {}
        grad_norm = None
        for update in range(settings.updates_per_batch):
            for i, batch in enumerate(batches):
                sync = contextlib.nullcontext() if i == len(batches) - 1 else accelerator.no_sync(wrapped)
                with sync, accelerator.autocast():
                    logps, mask, sampled, advs_i = scorer(wrapped, batch)
                    if beta and i not in ref_cache:
                        with torch.no_grad(), policy_model.disable_adapter():
                            ref_cache[i] = scorer(policy_model, batch)[0].detach()
                    # one update per batch: on-policy, old = current (exactly what sampled the tokens);
                    # more updates: the log-probs recorded when sampling are the old policy
                    old = logps.detach() if settings.updates_per_batch == 1 else sampled
                    loss, s = grpo_token_loss(logps, old, ref_cache.get(i), advs_i, mask,
                                              settings.clip_eps, beta, total_tokens)
                    accelerator.backward(loss * scale * weights[i])
                if update == 0 and weights[i]:
                    stats["loss"] += float(loss.detach())
                    stats["kl_sum"] += s["kl_sum"]
                    stats["clipped_sum"] += s["clipped_sum"]
                    stats["logp_gap_sum"] += float(((logps.detach() - sampled).abs() * mask).sum())
            if settings.max_grad_norm:
                grad_norm = float(accelerator.clip_grad_norm_(trainable, settings.max_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        update_s = time.perf_counter() - t1

        local = torch.tensor([sum(reward_values), sum(r * r for r in reward_values), len(reward_values),
                              sum(s.quality for s in scored), sum(s.latency for s in scored),
                              sum(s.laal for s in scored), sum(s.wait_fraction for s in scored),
                              stats["kl_sum"], stats["clipped_sum"], stats["logp_gap_sum"], local_tokens,
                              stats["loss"]], dtype=torch.float64, device=device)
        g = accelerator.reduce(local, "sum").tolist()
        n, tok = max(1.0, g[2]), max(1.0, g[10])
        mean_r = g[0] / n
        record = {
            "step": step,
            "reward_mean": round(mean_r, 4),
            "reward_std": round(max(0.0, g[1] / n - mean_r * mean_r) ** 0.5, 4),
            "quality": round(g[3] / n, 3),
            "AL": round(g[4] / n, 3),
            "LAAL": round(g[5] / n, 3),
            "wait_fraction": round(g[6] / n, 4),
            "kl": round(g[7] / tok, 6),
            "clipped_fraction": round(g[8] / tok, 4),
            "logp_gap": round(g[9] / tok, 5),  # mean |teacher-forced - sampled| log-prob (numerics)
            "loss": round(g[11], 6),
            "tokens": int(g[10]),
            "update_tokens": update_tokens,  # tokens through the model per forward of the update (this process)
            "rollout_tokens": getattr(generator, "tokens_processed", None),
            "tokens_per_s": round(local_tokens / rollout_s, 2) if rollout_s > 0 else None,
            "rollout_s": round(rollout_s, 2),
            "update_s": round(update_s, 2),
            "grad_norm": round(grad_norm, 5) if grad_norm is not None else None,
            "episodes": int(g[2]),
            "processes": accelerator.num_processes,
        }
        # the step's lines (and its dev eval) are logged before its checkpoint: a kill in between
        # leaves lines after the checkpoint, which a resume drops and redoes, never a checkpointed
        # step without its line
        if accelerator.is_main_process:
            lines = [record]
            if settings.dev_src and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
                lines.append({"step": step, "eval": _evaluate(settings, pair, loaded, policy_model, out, step)})
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in lines))
                fh.flush()
                os.fsync(fh.fileno())
            bar.set_postfix(r=f"{record['reward_mean']:.2f}", q=f"{record['quality']:.1f}", AL=f"{record['AL']:.2f}",
                            wait=f"{record['wait_fraction']:.2f}")
            bar.update(1)
        if step % settings.save_every == 0 or step == settings.steps:
            save_checkpoint(out, step, policy_model, optimizer, accelerator)
        accelerator.wait_for_everyone()
    bar.close()
    if accelerator.is_main_process:
        export_adapter(settings, _ckpt_dir(out, settings.steps), out)
        evals = [r for r in read_complete_jsonl(log_path) if "eval" in r]
        (out / "seqpo.json").write_text(json.dumps({
            "pair": str(pair), "stage": "seqpo", "start": _start_name(settings.adapter, pair), "format": "seqpo",
            "base_model": loaded.name, "start_adapter": settings.adapter, "steps": settings.steps,
            "episodes": settings.steps * settings.sources * settings.group, "reward": settings.reward,
            "command": command,
            "dev": {"step": evals[-1]["step"], **evals[-1]["eval"], "lines": settings.dev_limit} if evals else None,
            "trained_by": "seqpo train"}, indent=2, ensure_ascii=False))
    return out
