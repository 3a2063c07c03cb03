"""One process of a `seqpo train` run: its start (accelerate's process group, the settings checked
against the run folder's, the policy model and its optimizer, resumed from the latest checkpoint)
and its end (the final adapter in OUT and its seqpo.json).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine import REFERENCE_MODE, engine_class
from ..errors import InputFileError, SettingsError
from ..files import load_parallel
from ..model import training_device, use_bf16, uses_chat_template
from ..resume import check_run_settings, read_complete_jsonl, write_atomic
from ..stream import count_units
from .lora import checkpoint_dir, export_adapter, latest_checkpoint, load_policy_model, set_rng_state
from .train_settings import TrainSettings, start_name

log = logging.getLogger(__name__)


def training_sentences(settings: TrainSettings, pair) -> tuple[list[str], list[str], list[int]]:
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
class TrainingRun:
    """What setup hands the loop: one process of the run, the model three ways, its optimizer."""

    accelerator: Any
    loaded: Any  # model.LoadedModel: tokenizer, name, chat format
    wrapped: Any  # the model as accelerate wraps it (DDP): the trained forward and backward
    model: Any  # the same model unwrapped: rollouts, the KL reference (LoRA disabled), checkpoints
    optimizer: Any
    trainable: list
    done: int  # steps a checkpoint already holds (0 for a fresh run)
    vllm: Any = None  # the vLLM rollout engine (--rollout-backend vllm)


def start_run(settings: TrainSettings, out: Path) -> TrainingRun:
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
        chat = uses_chat_template(settings.chat_template, settings.model, settings.format)
        recorded["chat_template"] = "on" if chat else "off"
        check_run_settings(out / "settings.json", recorded, out, legacy={"dtype": "auto", "chat_template": "off",
                                                                             "format": REFERENCE_MODE, "slot": 16})
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
    run = TrainingRun(accelerator, loaded, wrapped, accelerator.unwrap_model(wrapped), optimizer, trainable, done)

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


def finish_run(settings: TrainSettings, pair, run: TrainingRun, out: Path, command: str | None) -> None:
    """The final adapter in OUT (start + trained LoRA as one) and its seqpo.json."""
    export_adapter(settings, checkpoint_dir(out, settings.steps), out)
    evals = [r for r in read_complete_jsonl(out / "log.jsonl") if "eval" in r]
    (out / "seqpo.json").write_text(json.dumps({
        "pair": str(pair), "stage": "seqpo", "start": start_name(settings.adapter, pair),
        "format": settings.format if settings.incremental() else "seqpo",
        **({"slot": settings.slot} if engine_class(settings.format).reserves_source else {}),
        "base_model": run.loaded.name, "start_adapter": settings.adapter, "steps": settings.steps,
        "episodes": settings.steps * settings.sources * settings.group, "reward": settings.reward,
        "command": command,
        "dev": {"step": evals[-1]["step"], **evals[-1]["eval"], "lines": settings.dev_limit} if evals else None,
        "trained_by": "seqpo train"}, indent=2, ensure_ascii=False))

