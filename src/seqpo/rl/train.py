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

The loop below reads top to bottom; its pieces: `train_settings.py` (the settings),
`training_run.py` (start and end of a run), `rollout.py`, `reward.py`, `update.py` (the GRPO
update, grpo.py), `step_log.py` (the log line), `lora.py` (checkpoints, the exported adapter).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from tqdm import tqdm

from ..engine import PREFIX_CACHED_MODE, engine_class, engine_for
from ..eval_settings import EvalSettings
from ..evaluate import evaluate
from ..generation import Generator
from ..model import LoadedModel
from ..policies.llm import LLMPolicy
from .lora import checkpoint_dir, save_checkpoint
from .reward import advantages, group_rewards
from .rollout import sample_rollouts, score_rollouts
from .step_log import StepStats, append_log, log_record
from .train_settings import TrainSettings
from .training_run import finish_run, start_run, training_sentences
from .update import Scored, update_policy


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


# -- one step's pieces, in the order the loop runs them ---------------------------------------------

def step_sources(step: int, usable: list[int], sources, references, settings: TrainSettings,
                 accelerator) -> list[tuple[int, str, str]]:
    """(index, source, reference) of this process's share of the step's training sentences."""
    picked = step_items(len(usable), step - 1, settings.sources, settings.seed)
    mine = picked[accelerator.process_index :: accelerator.num_processes]
    return [(usable[i], sources[usable[i]], references[usable[i]]) for i in mine]


def make_generator(model, tokenizer, settings: TrainSettings, batch: int, vllm=None, out: Path | None = None,
                   step: int = 0, chat=None):
    """The rollout sampler of one step: a fresh engine or transformers Generator (its cache belongs to
    the weights of this step), or the run's vLLM engine pointed at this step's LoRA. In the append
    and slots formats, the format's engine, recording each episode's transcript for the update."""
    if settings.incremental():
        engine = engine_for(model, tokenizer, settings.format, slot=settings.slot, batch_size=batch, do_sample=True,
                            temperature=settings.temperature, few_shot=settings.use_few_shot())
        engine.record = True
        return engine
    if vllm is not None:
        target = out / "vllm-lora" / f"step-{step:06d}"
        model.save_pretrained(target)
        vllm.set_adapter(target, step)
        return vllm

    if settings.rollouts == PREFIX_CACHED_MODE:
        return engine_for(model, tokenizer, PREFIX_CACHED_MODE, batch_size=batch, do_sample=True,
                          temperature=settings.temperature, few_shot=settings.use_few_shot(), chat=chat)
    return Generator(model, tokenizer, batch_size=batch, do_sample=True, temperature=settings.temperature, chat=chat)


def score_groups(groups, pair, settings: TrainSettings) -> Scored:
    """Score every rollout (quality, latency), reward it within its group (reward.py), and turn the
    group's rewards into advantages."""

    scored = Scored([], [], [], [])
    for group in groups:
        scores = score_rollouts(group, pair.target, settings.quality, settings.comet)
        rewards = group_rewards(scores, settings)
        scored.rollouts += group
        scored.scores += scores
        scored.rewards += rewards
        scored.advantages += advantages(rewards)
    return scored


def evaluate_dev(settings: TrainSettings, pair, loaded, model, out: Path, step: int) -> dict:
    """`seqpo eval` of the step's checkpoint on the dev file (in OUT/eval/step-N); its scores."""

    decoding = settings.format if settings.incremental() else PREFIX_CACHED_MODE
    chat = loaded.chat if engine_class(decoding).takes_chat_template else None
    ev = EvalSettings(pair=str(pair), policy="llm", chunk=settings.chunk, model=settings.model,
                      decoding=decoding, slot=settings.slot,
                      adapter=str(checkpoint_dir(out, step)), few_shot="yes" if settings.use_few_shot() else "no",
                      src=settings.dev_src, ref=settings.dev_ref, limit=settings.dev_limit,
                      out=str(out / "eval" / f"step-{step:06d}"), chat_template="on" if chat else "off")
    scores = evaluate(ev, loaded=LoadedModel(model, loaded.tokenizer, loaded.name, ev.adapter, chat),
                      progress=False)
    return {k: v for k, v in scores.items() if k != "signature"}


# -- the run ---------------------------------------------------------------------------------------

def train(settings: TrainSettings, progress: bool = True, command: str | None = None) -> Path:
    """Run (or resume) `settings.steps` training steps in `settings.out`; returns that folder."""
    pair = settings.validate()
    sources, references, usable = training_sentences(settings, pair)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run = start_run(settings, out)
    accelerator, main = run.accelerator, run.accelerator.is_main_process
    policy = LLMPolicy(max_step_tokens=settings.max_step_tokens, few_shot=settings.use_few_shot())
    beta = settings.kl_beta(pair)

    bar = tqdm(total=settings.steps, initial=run.done, unit="step", disable=not progress or not main,
               desc=f"seqpo train {pair}", dynamic_ncols=True)
    for step in range(run.done + 1, settings.steps + 1):
        # rollouts: `group` sampled episodes of each of this process's sentences
        items = step_sources(step, usable, sources, references, settings, accelerator)
        t0 = time.perf_counter()
        generator = make_generator(run.model, run.loaded.tokenizer, settings, len(items) * settings.group,
                                   run.vllm, out, step, run.loaded.chat)
        groups = sample_rollouts(generator, policy, pair, settings.chunk, items, settings.group)
        rollout_s = time.perf_counter() - t0
        # rewards and advantages, within each group
        scored = score_groups(groups, pair, settings)
        # loss and update
        t1 = time.perf_counter()
        update = update_policy(run, scored, settings, beta)
        update_s = time.perf_counter() - t1
        # log: the step's lines (and its dev eval) are logged before its checkpoint: a kill in
        # between leaves lines after the checkpoint, which a resume drops and redoes, never a
        # checkpointed step without its line
        stats = StepStats.of(scored, update).reduce(accelerator)
        record = log_record(step, stats, update, generator, rollout_s, update_s, accelerator.num_processes)
        if main:
            lines = [record]
            if settings.dev_src and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
                lines.append({"step": step, "eval": evaluate_dev(settings, pair, run.loaded, run.model, out, step)})
            append_log(out / "log.jsonl", lines)
            bar.set_postfix(r=f"{record['reward_mean']:.2f}", q=f"{record['quality']:.1f}", AL=f"{record['AL']:.2f}",
                            wait=f"{record['wait_fraction']:.2f}")
            bar.update(1)
        # checkpoint
        if step % settings.save_every == 0 or step == settings.steps:
            save_checkpoint(out, step, run.model, run.optimizer, accelerator)
        accelerator.wait_for_everyone()
    bar.close()
    if main:
        finish_run(settings, pair, run, out, command)
    # every process leaves together and tears down its process group: a process that exits while the
    # others still hold gloo's threads dies with "terminate called without an active exception"
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out
