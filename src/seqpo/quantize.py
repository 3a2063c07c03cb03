"""`--quantize int8`: the text model's linear layers, the output layer included, as torch's dynamic
int8 linear layers for CPU inference (int8 weights per output channel, activations quantized per
call, float32 out), by `torch.ao.quantization.quantize_dynamic`: fbgemm's and oneDNN's int8 matrix
kernels, the library path torch 2.13 still ships beside its torchao successor (which seqpo does
not depend on). What it costs in quality and gains in speed: docs/results.md.
"""

from __future__ import annotations

import warnings

import torch

from .errors import SettingsError
from .model_names import QUANTIZE


_RUNS_ON = {"int8": "torch's dynamic int8 kernels", "gguf": "llama.cpp's CPU build"}
_WEIGHTS = {"int8": "quantizes float32 weights", "gguf": "runs the GGUF's own weight types, no --dtype"}


def check_quantize(quantize: str | None, where: str, weights: torch.dtype) -> str:
    """`--quantize` for a model loaded on the resolved device `where` in `weights` dtype; returns it.
    The dynamic int8 kernels and llama.cpp (gguf) run on the CPU only; int8 replaces float32
    layers, and gguf runs the file's own weight types (so `--dtype` does not apply)."""
    name = str(quantize or "off").strip().lower()
    if name not in QUANTIZE:
        raise SettingsError(f"--quantize must be one of {', '.join(QUANTIZE)}; got {quantize!r}")
    if name != "off" and where != "cpu":
        raise SettingsError(f"--quantize {name} runs on the CPU only ({_RUNS_ON[name]}), not on "
                            f"{where}: use --device cpu")
    if name != "off" and weights != torch.float32:
        raise SettingsError(f"--quantize {name} {_WEIGHTS[name]}, not {str(weights).removeprefix('torch.')}: "
                            "use --dtype auto or float32")
    return name


def quantize_int8(lm):
    """`lm` with every linear layer of its base model, the output layer included, replaced (in
    place) by a dynamic int8 one. A peft model's LoRA layers stay float32, so its adapters still
    switch and disable on the int8 base."""
    names = {name: torch.ao.quantization.per_channel_dynamic_qconfig for name, module in lm.named_modules()
             if type(module) is torch.nn.Linear and "lora_" not in name}
    with warnings.catch_warnings():  # its deprecation notice points to torchao; not ours to act on
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(lm, names, inplace=True)


__all__ = ["QUANTIZE", "check_quantize", "quantize_int8"]
