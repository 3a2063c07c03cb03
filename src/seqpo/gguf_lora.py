"""A peft LoRA adapter as a llama.cpp LoRA adapter file (GGUF), for `--quantize gguf`.

llama.cpp applies a LoRA adapter at run time from a GGUF file of its own kind: `general.type`
"adapter", `adapter.type` "lora", `adapter.lora.alpha`, and for every adapted weight the two
factors under the base tensor's GGUF name with `.lora_a` / `.lora_b` appended. llama.cpp's
converter for this ships only in its source tree (convert_lora_to_gguf.py, which imports its
model-conversion script), not in any package on the index; the `gguf` package gives the writer
and the HF -> GGUF tensor-name map, so the conversion is the few lines below.

What carries over: peft scales `B @ A` by alpha / r (rsLoRA: alpha / sqrt(r)), llama.cpp by
`adapter.lora.alpha` / r, so alpha is written as is (rsLoRA rescaled). The bases seqpo bundles
(Gemma-3, Qwen2) keep their HF projection layouts in GGUF, so the factors need no permutation;
a base whose converter permutes the attention projections (Llama's q/k) is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

# GGUF architectures whose HF -> GGUF conversion keeps the q/k/v/o weights' layout (no rope
# permutation): a LoRA factor pair maps onto them unchanged
_UNPERMUTED = {"gemma3", "gemma2", "gemma", "qwen2", "qwen3"}


def gguf_architecture(path: Path) -> tuple[str, int]:
    """The `general.architecture` of a GGUF file and its number of blocks."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot read {path.name} as GGUF: {str(exc).splitlines()[0]}") from exc
    arch = _string(reader, "general.architecture")
    blocks = reader.fields.get(f"{arch}.block_count")
    if blocks is None:
        raise ModelLoadError(f"{path.name} has no {arch}.block_count: not a model GGUF")
    return arch, int(blocks.parts[blocks.data[0]][0])


def _string(reader, key: str) -> str:
    field = reader.fields.get(key)
    if field is None:
        raise ModelLoadError(f"{Path(reader.data.filename).name} has no {key}")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def write_lora_gguf(adapter: Path, base_gguf: Path, out: Path) -> Path:
    """Write the peft adapter folder `adapter` (trained on the model in `base_gguf`) to `out` as a
    llama.cpp LoRA GGUF; returns `out`. One-line `ModelLoadError` for an adapter llama.cpp cannot
    apply (DoRA, trained embeddings or output layer, a weight the base has no GGUF tensor for)."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ModelLoadError(f"adapter {adapter}: only plain LoRA converts for llama.cpp (not DoRA or {config.get('peft_type')})")
    if config.get("modules_to_save"):
        raise ModelLoadError(f"adapter {adapter} trains whole modules ({', '.join(config['modules_to_save'])}): "
                             "llama.cpp applies LoRA factors only")
    weights = adapter / "adapter_model.safetensors"
    if not weights.exists():
        raise ModelLoadError(f"adapter folder {adapter} has no adapter_model.safetensors")
    arch, blocks = gguf_architecture(base_gguf)
    if arch not in _UNPERMUTED:
        raise ModelLoadError(f"LoRA conversion for llama.cpp supports {', '.join(sorted(_UNPERMUTED))} bases, not {arch}")
    names = gguf.get_tensor_name_map(_arch_enum(arch), blocks)
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelLoadError(f"adapter {adapter}: per-module ranks or alphas do not convert (llama.cpp has one alpha)")
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)  # peft's alpha / sqrt(r) is llama.cpp's (alpha * sqrt(r)) / r

    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(weights)).items():
        kind = "a" if ".lora_A." in key else "b" if ".lora_B." in key else None
        if kind is None:
            raise ModelLoadError(f"adapter {adapter} holds {key}, not a LoRA factor: llama.cpp cannot apply it")
        hf = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight").replace(".lora_B.weight", ".weight")
        hf = hf.replace("model.language_model.", "model.", 1)
        target = names.get_name(hf, try_suffixes=(".weight",))
        if target is None:
            raise ModelLoadError(f"adapter {adapter}: {hf} has no tensor in the {arch} GGUF")
        factors.setdefault(target, {})[kind] = np.ascontiguousarray(value, dtype=np.float32)

    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for target, pair in sorted(factors.items()):
        if set(pair) != {"a", "b"}:
            raise ModelLoadError(f"adapter {adapter}: {target} lacks its lora_{'B' if 'a' in pair else 'A'} factor")
        # A is [r, in] and B [out, r] in torch's order; the writer reverses them into ggml's
        # [in, r] and [r, out], which is what llama.cpp checks against the base tensor
        writer.add_tensor(f"{target}.lora_a", pair["a"])
        writer.add_tensor(f"{target}.lora_b", pair["b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _arch_enum(arch: str):
    import gguf

    for enum, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return enum
    raise ModelLoadError(f"the gguf package does not know the architecture {arch}")


__all__ = ["gguf_architecture", "write_lora_gguf"]
