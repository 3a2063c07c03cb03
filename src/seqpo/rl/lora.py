"""The LoRA `seqpo train` trains: built on the start adapter merged into the base weights, saved
in checkpoints with its optimizer and RNG states, exported beside the start adapter as one peft adapter.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import InputFileError, SettingsError
from ..model import load_model, quiet_peft, training_dtype

# -- checkpoints ----------------------------------------------------------------------------------
# accelerate's save_state would also write the frozen 1 GB base model at every checkpoint; a LoRA run
# only needs the adapter, the optimizer and the RNG states, so those three are saved here.

def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    done = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, model, optimizer, accelerator, keep: int = 2) -> None:
    target = checkpoint_dir(out, step)
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


# -- the model -------------------------------------------------------------------------------------

def _check_adapter(path: Path) -> Path:
    if not (path / "adapter_config.json").exists():
        raise InputFileError(f"adapter folder {path} has no adapter_config.json")
    return path


def load_policy_model(settings, resume_from: Path | None, save_base: Path | None = None,
                       device: str = "cpu"):
    """The network being trained: the base model with the start adapter (SFT) merged into its
    weights, plus a fresh trainable LoRA ("default"). Disabling that LoRA gives exactly the start
    policy, which is the KL reference (SeqPO-SiMT: KL to the SFT reference) without a second copy."""
    from peft import LoraConfig, PeftModel, get_peft_model  # start-up cost: ~3 s; only training needs it


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
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM",
                layers_to_transform=top_layers(base, settings.lora_layers)))
    model.eval()  # no dropout: sampled and trained log-probs come from the same function
    return loaded, model


def top_layers(model, n: int) -> list[int] | None:
    """The indices of the model's top `n` decoder layers (None: all of them), for peft's
    `layers_to_transform`. Below the lowest LoRA layer nothing needs a gradient, so autograd's
    backward pass ends there."""
    if not n:
        return None
    total = model.config.get_text_config().num_hidden_layers
    if n > total:
        raise SettingsError(f"--lora-layers {n}: the model has {total} layers")
    return list(range(total - n, total))


def _every_layer(model, name: str) -> str:
    """The adapter `name` over every layer: itself, or (trained with --lora-layers) a copy whose
    lower layers hold a zero update (lora_B = 0), since peft's "cat" combination needs every layer of
    every adapter it joins."""
    config = model.peft_config[name]
    if config.layers_to_transform is None:
        return name
    full = f"{name}_every_layer"
    model.add_adapter(full, dataclasses.replace(config, layers_to_transform=None, layers_pattern=None,
                                                init_lora_weights=True))  # lora_B starts at zero: no update
    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if f".{name}." in key:
                state[key.replace(f".{name}.", f".{full}.")].copy_(value)
    return full


def export_adapter(settings, trained: Path, out: Path) -> None:
    """Save in `out` one standard adapter for the original base model: the start adapter and the
    trained one side by side (peft's "cat" combination: rank r1 + r2, each keeping its own scale),
    so `--adapter OUT` loads the trained policy on the bundled model like any SFT adapter."""
    from peft import PeftModel  # start-up cost: ~3 s; only training needs it


    if not settings.adapter:
        for f in trained.iterdir():
            if f.name.startswith("adapter_"):
                shutil.copy2(f, out / f.name)
        return
    with quiet_peft():
        base = load_model(settings.model, dtype="float32", device="cpu").model  # saved as float32, like the adapters
        model = PeftModel.from_pretrained(base, str(settings.adapter), adapter_name="start")
        model.load_adapter(str(trained), adapter_name="trained")
        model.add_weighted_adapter(["start", _every_layer(model, "trained")], [1.0, 1.0], adapter_name="default",
                                   combination_type="cat")
        model.save_pretrained(out, selected_adapters=["default"])
