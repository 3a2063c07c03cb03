"""Warm-up SFT (SeqPO-SiMT, arXiv 2505.20622, sec. 3.2): LoRA fine-tuning on partial-translation
pairs so the model knows the streaming format before RL.

Each example is the SeqPO prompt (source prefix, target so far) followed by the next segment and
its end marker (a newline; a bare newline = wait). Loss is on the segment and marker only.

transformers' Trainer runs the loop (checkpoints, resume, `accelerate launch` for several GPUs);
we override only `compute_loss`: Gemma-3's vocabulary has 262k entries, and the default loss
materialises full-vocabulary logits for every position of the batch (8x128 positions = 1 GB in
fp32) when only the few segment positions carry a loss. We apply the LM head at those positions.

`--format slots` trains the same LoRA on the slots (ExPosST) sequence of each whole sentence
instead (`seqpo.sft_slots`), for policies that decode with `--decoding slots`.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from .config import check_at_least
from .data.partial_settings import settings_path
from .engine import MODES, REFERENCE_MODE
from .errors import InputFileError
from .languages import LanguagePair, parse_pair
from .generation import prompt_ids
from .model import load_model, training_device, training_dtype, use_bf16, uses_chat_template
from .prompts import check_supported, seqpo_prompt
from .requests import Request
from .resume import check_run_settings
from .sft_settings import SFTSettings
from .sft_slots import collate, encode_episodes, group_episodes, slots_loss
from .slots import sliding_window

log = logging.getLogger(__name__)
IGNORE = -100


def format_example(pair: LanguagePair, source_prefix: str, target_prefix: str, segment: str) -> tuple[str, str]:
    """(prompt, completion): the completion continues right after the target so far, as at inference."""
    target = target_prefix.strip()
    prompt = seqpo_prompt(pair, source_prefix, target)
    text = segment.rstrip()
    if not target:
        text = " " + text.lstrip() if text.strip() else ""
    return prompt, text + "\n"


def tokenize_example(tokenizer, prompt: str, completion: str, max_length: int, chat=None) -> dict:
    """input_ids and labels (prompt masked with -100); truncated from the left to keep the segment.
    The prompt becomes ids as at inference without few-shot examples (`generation.prompt_ids`: BOS,
    or the chat template's turns when `chat` is a `prompts.ChatFormat`)."""
    p = prompt_ids(tokenizer, Request("", prompt), chat)
    c = tokenizer(completion, add_special_tokens=False).input_ids
    ids, labels = p + c, [IGNORE] * len(p) + c
    if len(ids) > max_length:
        ids, labels = ids[-max_length:], labels[-max_length:]
    return {"input_ids": ids, "labels": labels}


def read_pairs(path: str | Path, limit: int | None = None) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"pairs file not found: {p}")
    rows = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{p}:{n}: not JSON ({exc.msg})") from exc
            if row.get("skipped"):
                continue
            if not {"source_prefix", "target_prefix", "segment"} <= row.keys():
                raise InputFileError(f"{p}:{n}: needs source_prefix, target_prefix and segment")
            rows.append(row)
    if not rows:
        raise InputFileError(f"{p} holds no examples")
    return rows[:limit] if limit else rows


def balance_waits(rows: list[dict], max_share: float, seed: int = 0) -> list[dict]:
    """Drop random wait examples until waits are at most `max_share` of all examples.

    A weak model's agreement data is mostly waits (78% for Gemma-3-270M on en-zh); trained on that,
    greedy decoding learns that an empty line is almost always right and never writes."""
    if max_share >= 1:
        return rows
    keep = kept_waits([not r["segment"].strip() for r in rows], max_share, seed)
    return [r for i, r in enumerate(rows) if r["segment"].strip() or i in keep]


def kept_waits(is_wait: list[bool], max_share: float, seed: int = 0) -> set[int]:
    """Indices of the waits kept (a random sample) so that waits are at most `max_share` of all."""
    waits = [i for i, w in enumerate(is_wait) if w]
    if max_share >= 1 or not waits:
        return set(waits)
    keep_n = min(len(waits), int(max_share / (1 - max_share) * (len(is_wait) - len(waits)))) if max_share > 0 else 0
    return set(random.Random(seed).sample(waits, keep_n))


def segment_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens, with logits only for the columns from the first
    labelled one to the end (`logits_to_keep`). It goes through the model's own forward, so a DDP
    wrapper (`accelerate launch`, torchrun) synchronises gradients and softcapping applies; batches
    are left-padded, which puts every example's segment in the last columns."""
    target = labels[:, 1:]  # (B, T-1): position t predicts token t+1
    keep = target != IGNORE
    cols = keep.any(0).nonzero()
    first = int(cols.min()) if len(cols) else target.shape[1] - 1
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=input_ids.shape[1] - first,
                use_cache=False)
    logits = out.logits[:, :-1].float()  # positions first .. T-2
    tail, mask = target[:, first:], keep[:, first:]
    return torch.nn.functional.cross_entropy(logits[mask], tail[mask])


def _training_arguments(settings: SFTSettings, out: Path, progress: bool, device: str = "cpu"):
    from transformers import TrainingArguments  # start-up cost: transformers' Trainer stack takes ~3 s to import
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=settings.epochs, max_steps=settings.max_steps,
        learning_rate=settings.lr, per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, save_steps=settings.save_steps, save_total_limit=2,
        logging_steps=settings.logging_steps, bf16=use_bf16(settings.bf16, device), seed=settings.seed,
        report_to=[], disable_tqdm=not progress, remove_unused_columns=False, lr_scheduler_type="cosine",
        warmup_steps=0.03, dataloader_num_workers=0,  # a float is a fraction of all steps
        use_cpu=device == "cpu",  # transformers refuses bf16 on CPU unless told
    )


def train_sft(settings: SFTSettings, progress: bool = True, command: str | None = None) -> Path:
    """Fine-tune and save the adapter in `settings.out`; resumes from the last checkpoint there."""
    # start-up cost: peft and transformers' Trainer stack take ~4 s to import; only training needs them
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer
    from transformers.trainer_utils import get_last_checkpoint

    pair = check_supported(parse_pair(settings.pair))
    if not settings.pairs or not settings.out:
        raise InputFileError("--pairs and --out are required")
    check_at_least(settings, 1, "slot")

    sidecar = settings_path(Path(settings.pairs))
    if sidecar.exists() and json.loads(sidecar.read_text()).get("pair") not in (None, str(pair)):
        raise InputFileError(f"{settings.pairs} holds {json.loads(sidecar.read_text())['pair']} examples, not {pair}")
    if settings.format == "slots":
        episodes = group_episodes(read_pairs(settings.pairs))[: settings.limit]
        steps = [(e, s) for e, ep in enumerate(episodes) for s in range(len(ep))]
        kept = kept_waits([not episodes[e][s]["segment"].strip() for e, s in steps], settings.max_wait_share,
                          settings.seed)
        kept_steps = {steps[i] for i in kept}
    else:
        rows = balance_waits(read_pairs(settings.pairs, settings.limit), settings.max_wait_share, settings.seed)
    device = training_device(settings.device)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    # a checkpoint resumes only under the settings that made it; more steps or epochs may be asked for
    decoding = settings.format if settings.format in MODES else REFERENCE_MODE  # the decoding the format trains for
    recorded = {k: v for k, v in asdict(settings).items()
                if k not in ("out", "epochs", "max_steps", "save_steps", "logging_steps", "device")}
    # the chat template as resolved (runs from before it had none)
    recorded["chat_template"] = "on" if uses_chat_template(settings.chat_template, settings.model, decoding) else "off"
    check_run_settings(out / "settings.json", recorded, out, legacy={"dtype": "auto", "chat_template": "off"})
    # weights in --dtype (bf16 on a GPU) loaded on the CPU: Trainer moves them to its device; the
    # LoRA weights peft adds stay float32
    loaded = load_model(settings.model, None, training_dtype(settings.dtype, device), "cpu", settings.chat_template,
                        decoding)
    tokenizer, base = loaded.tokenizer, loaded.model
    base.train()
    model = get_peft_model(base, LoraConfig(
        r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
        target_modules=[t.strip() for t in settings.lora_targets.split(",") if t.strip()], task_type="CAUSAL_LM"))
    if settings.format == "slots":
        # a list of dicts is a map-style dataset for Trainer
        dataset = encode_episodes(tokenizer, pair, episodes, settings.slot, kept_steps)
        window = sliding_window(base)
        collator = partial(collate, pad_id=tokenizer.pad_token_id)
        loss_of = lambda m, x: slots_loss(m, x["input_ids"], x["position_ids"], x["mask"], x["labels"], window)
        summary = {"format": "slots", "slot": settings.slot, "episodes": len(episodes), "steps": len(steps),
                   "wait_steps_with_loss": len(kept)}
    else:
        dataset = [tokenize_example(tokenizer, *format_example(pair, r["source_prefix"], r["target_prefix"],
                                                               r["segment"]), settings.max_length, loaded.chat)
                   for r in rows]
        tokenizer.padding_side = "left"  # segments end every row: logits are computed for the last columns only
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
        loss_of = lambda m, x: segment_loss(m, x["input_ids"], x["attention_mask"], x["labels"])
        summary = {"format": "seqpo", "examples": len(rows)}

    class SegmentLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = loss_of(model, inputs)
            return (loss, None) if return_outputs else loss

    try:
        args = _training_arguments(settings, out, progress, device)
    except ValueError as exc:  # transformers validates combinations (precision vs device, steps)
        raise InputFileError(f"invalid training settings: {str(exc).strip().splitlines()[0]}") from exc
    trainer = SegmentLossTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        log.warning("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    if trainer.is_world_process_zero():
        model.save_pretrained(out)
        # what the adapter is, for people (docs/formats.md); `--adapter sft|seqpo` finds shipped adapters by folder
        meta = {"pair": str(pair), "stage": "sft", "start": "none", "command": command,
                "base_model": loaded.name, "chat_template": "on" if loaded.chat else "off", **summary}
        (out / "seqpo.json").write_text(json.dumps(meta, indent=2))
    # all processes leave together, process group torn down (see rl.train: gloo aborts a process otherwise)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return out
