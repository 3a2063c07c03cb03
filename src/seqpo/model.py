"""Loading causal LMs: the bundled Gemma-3-270M GGUF (dequantized once, cached as safetensors),
any local path or hub id, and peft LoRA adapters on top, on the device and in the dtype asked for
(`--device`, `--dtype`: `resolve_device`, `resolve_dtype`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from .bundled import (BASES, DEFAULT_BASE, BundledBase, assemble, build_cache_dir, bundled_base, cache_dir,
                      thread_count)
from .engine import REFERENCE_MODE, engine_class
from .errors import ModelLoadError, SettingsError
from .model_names import CHAT_TEMPLATE_CHOICES, DEFAULT_MODEL, DTYPES, is_bundled
from .output_vocab import check_vocab, restrict_vocab
from .prompts import chat_format
from .quantize import check_quantize, quantize_int8

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "auto-map")


def resolve_device(device: str | None = "auto") -> str:
    """`--device` as a torch device ("cpu", "cuda", "cuda:N"), or "auto-map" (accelerate spreads a
    model too large for one GPU over all of them). auto = CUDA when present, else CPU. A GPU asked
    for on a machine without one is a `SettingsError`, not a silent CPU run."""
    name = str(device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name not in ("cuda", "auto-map") and not re.fullmatch(r"cuda:\d+", name):
        raise SettingsError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    if not torch.cuda.is_available():
        raise SettingsError(f"--device {name}: this machine has no CUDA GPU that torch {torch.__version__} can use "
                            "(use --device cpu, or install a CUDA build of torch)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise SettingsError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return name


def training_device(device: str | None = "auto") -> str:
    """`--device` for `seqpo sft` / `seqpo train`: "cpu" or "cuda". accelerate (or Trainer) puts
    one model copy on each process's GPU, so a GPU number or a split model is not ours to choose
    there: `CUDA_VISIBLE_DEVICES` and `accelerate launch` choose the GPUs."""
    where = resolve_device(device)
    if where not in ("cpu", "cuda"):
        raise SettingsError(f"--device {where}: training takes auto, cpu or cuda (choose GPUs with "
                            "CUDA_VISIBLE_DEVICES or `accelerate launch`)")
    return where


def training_dtype(dtype: str | None, device: str) -> str:
    """The weights dtype of a training run on `device`, by name: training loads the weights on the
    CPU (accelerate moves them), so `--dtype auto` is resolved for where they will run."""
    return str(resolve_dtype(dtype, device)).removeprefix("torch.")


def use_bf16(choice: str, device: str | None = None) -> bool:
    """The --bf16 setting (auto/yes/no) resolved for the training device ("cpu" or "cuda"; None: CUDA
    when present): CUDA support, or AMX/AVX512 CPUs."""
    if choice != "auto":
        return choice == "yes"
    if device == "cuda" or (device is None and torch.cuda.is_available()):
        return torch.cuda.is_bf16_supported()
    try:
        return "AMX" in torch.backends.cpu.get_cpu_capability() or "AVX512" in torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return False


def resolve_dtype(dtype: str | None, device: str) -> "torch.dtype":
    """`--dtype` for a resolved device: auto = bfloat16 on a GPU that supports it, else float32
    (float16 overflows in Gemma-3's activations, so auto never picks it)."""
    name = str(dtype or "auto").strip().lower()
    if name not in DTYPES:
        raise SettingsError(f"--dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if name == "auto":
        return torch.bfloat16 if device != "cpu" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def bundled_cache_dir(name: str = DEFAULT_BASE) -> Path:
    """Where the dequantized bundled base `name` is cached."""
    return cache_dir() / name


def configure_threads() -> None:
    """Use every core for intra-op work; inter-op parallelism only adds contention for one model."""
    torch.set_num_threads(thread_count())
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process; harmless
        pass


def _dequantize(base: BundledBase, into: Path) -> None:
    """Join the base's GGUF parts (in the seqpo cache, not the packages' own ~/.cache default) and
    dequantize them into the folder `into` as a float32 safetensors checkpoint."""
    gguf = assemble(base, cache_dir() / "gguf")
    log.warning("first use: dequantizing %s into %s (about %s, once)", gguf.name, bundled_cache_dir(base.name),
                "a minute" if base.size < 300_000_000 else "a few minutes")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-quantized model; the weights are already dequantized,
    # so dropping the quantizer records makes it a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def bundled_model_dir(name: str = DEFAULT_BASE, damaged: os.stat_result | None = None) -> Path:
    """The dequantized bundled base `name`, made once and cached as safetensors (the Gemma: ~50 s
    once, ~1 s after)."""
    base = BASES[name]
    target = bundled_cache_dir(name)
    if damaged is None and target.exists():
        if (target / "config.json").exists() and any(target.glob("*.safetensors")):
            return target
        damaged = target.stat()  # a copy made by hand, or cut short by an older version
    base.part_files()  # a missing extra is a one-line error before any lock or folder is made
    return build_cache_dir(target, lambda into: _dequantize(base, into), damaged)


def resolve_model_path(model: str | None) -> str:
    base = bundled_base(model)
    if base is not None:
        return str(bundled_model_dir(base.name))
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise ModelLoadError(f"model folder {path} has no config.json")
        return str(path)
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return model  # a hub id; transformers resolves it from the local HF cache
    raise ModelLoadError(f"model path not found: {model}")


@contextlib.contextmanager
def quiet_peft():
    """peft calls a transformers API deprecated in v5 on every adapter load; not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    name: str
    adapter: str | None
    chat: object = None  # prompts.ChatFormat when prompts go in the model's chat template (`--chat-template`)


def uses_chat_template(choice: str | None, model: str | None, decoding: str, tokenizer=None) -> bool:
    """`--chat-template` resolved: auto = on for a tokenizer with a chat template, except on the
    bundled base model (its shipped adapters were trained on the plain prompt) and in append/slots
    decoding (their own formats). `tokenizer` is loaded when needed and not given. `on` where it
    cannot apply is a `SettingsError`."""
    choice = check_chat_template(choice, decoding)
    if choice == "off" or (choice == "auto" and (is_bundled(model) or not engine_class(decoding).takes_chat_template)):
        return False
    if tokenizer is None:
        tokenizer = load_tokenizer(model)
    if getattr(tokenizer, "chat_template", None):
        return True
    if choice == "on":
        raise SettingsError(f"--chat-template on: the tokenizer of {model or DEFAULT_MODEL} has no chat template")
    return False


def check_chat_template(choice: str | None, decoding: str) -> str:
    """`--chat-template` checked against `--decoding` (no model needed); returns the choice."""
    choice = str(choice or "auto").strip().lower()
    if choice not in CHAT_TEMPLATE_CHOICES:
        raise SettingsError(f"--chat-template must be one of {', '.join(CHAT_TEMPLATE_CHOICES)}; got {choice!r}")
    if choice == "on" and not engine_class(decoding).takes_chat_template:
        raise SettingsError(f"--chat-template on needs --decoding reencode or cached ({decoding} has its own format)")
    return choice


def load_tokenizer(model: str | None):
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(model), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of '{model or DEFAULT_MODEL}': {str(exc).splitlines()[0]}") from exc


def load_model(model: str | None = None, adapter: str | None = None, dtype: str = "auto",
               device: str = "auto", chat_template: str = "off", decoding: str = REFERENCE_MODE,
               quantize: str = "off", vocab: str = "full") -> LoadedModel:
    """Load a causal LM (+ optional peft adapter) for inference, in eval mode, on `device` in `dtype`
    (see `resolve_device`, `resolve_dtype`; the defaults give float32 on the CPU, as before GPUs),
    with its chat format when `chat_template` resolves to on for `decoding` (`uses_chat_template`),
    its output layer restricted to the `vocab` token set (`restrict_vocab`), its linear layers int8
    with `quantize` int8 (`quantize_int8`)."""
    check_chat_template(chat_template, decoding)  # a wrong setting fails before loading
    check_vocab(vocab)

    where = resolve_device(device)
    weights = resolve_dtype(dtype, where)
    quantize = check_quantize(quantize, where, weights)
    if quantize == "gguf":
        return _load_gguf(model, {"default": adapter} if adapter else {}, chat_template, decoding, device, vocab)
    # accelerate places the weights while loading (no CPU copy first); "auto" also splits a model
    # over several GPUs. The CPU keeps transformers' plain path.
    placement = {} if where == "cpu" else {"device_map": "auto" if where == "auto-map" else where}
    configure_threads()
    path = resolve_model_path(model)
    hf_logging.disable_progress_bar()  # a cached load takes ~1 s; its bar is noise in live output
    def attempt():
        # nothing is ever downloaded at run time: hub ids resolve from the local HF cache only
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return tok, AutoModelForCausalLM.from_pretrained(path, dtype=weights, local_files_only=True, **placement)

    try:
        try:
            tokenizer, lm = attempt()
        except Exception:
            base = bundled_base(model)
            if base is None or path != str(bundled_cache_dir(base.name)):
                raise
            # our own cache is damaged (disk full, manual edits): rebuild it once from the GGUF
            log.warning("cached copy of the bundled model is unreadable; rebuilding it")
            damaged = Path(path).stat() if Path(path).exists() else None
            path = str(bundled_model_dir(base.name, damaged))
            tokenizer, lm = attempt()
    # A corrupt checkpoint surfaces as whatever its parser raises (OSError, SafetensorError,
    # JSONDecodeError, ...); at this boundary every one of them means "this model cannot be loaded".
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model '{model or DEFAULT_MODEL}': {first}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = None
    if uses_chat_template(chat_template, model, decoding, tokenizer):
        try:
            chat = chat_format(tokenizer)
        except Exception as exc:  # a template's own errors (jinja, raise_exception) are all this
            raise SettingsError(f"cannot use the chat template of {model}: {str(exc).splitlines()[0]}") from exc
    if adapter:
        lm = _attach_adapter(lm, adapter)
    lm.eval()
    lm = restrict_vocab(lm, tokenizer, vocab)
    if quantize == "int8":
        lm = quantize_int8(lm)
    return LoadedModel(lm, tokenizer, model or DEFAULT_MODEL, str(adapter) if adapter else None, chat)


def _load_gguf(model: str | None, adapters: dict[str, str], chat_template: str, decoding: str, device: str,
               vocab: str = "full"):
    """`load_model(..., quantize="gguf")`: the GGUF of `model` on llama.cpp with `adapters`
    (name -> peft folder), as a `model.LoadedModel` whose model is a `LlamaCppModel`."""
    # start-up cost: llama.cpp's library, only for gguf
    from .llama_cpp_backend import LlamaCppModel, gguf_path, gguf_tokenizer, lora_gguf, needs_llama_cpp

    if engine_class(decoding).incremental:
        raise SettingsError(f"--quantize gguf runs reencode or cached decoding (llama.cpp reuses the prompt's "
                            f"cached prefix itself), not {decoding}")
    if resolve_device(device) != "cpu":
        raise SettingsError("--quantize gguf runs on the CPU (llama.cpp's CPU build): use --device cpu")
    if check_vocab(vocab) != "full":
        raise SettingsError(f"--vocab {vocab} restricts the torch output layer; --quantize gguf runs llama.cpp's "
                            "whole one: use --vocab full")
    needs_llama_cpp()  # a missing package fails before any conversion
    path = gguf_path(model)
    files = {name: lora_gguf(folder, path) for name, folder in adapters.items()}
    lm = LlamaCppModel(path, files)
    tokenizer = load_tokenizer(model) if bundled_base(model) is not None else gguf_tokenizer(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = chat_format(tokenizer) if uses_chat_template(chat_template, model, decoding, tokenizer) else None
    summary = ", ".join(f"{name}={folder}" for name, folder in adapters.items()) or None
    return LoadedModel(lm, tokenizer, model or DEFAULT_MODEL, summary, chat)


def _attach_adapter(lm, adapter: str, name: str | None = None):
    """`lm` with the peft adapter folder `adapter` loaded (as adapter `name`; peft's "default"
    when None). A PeftModel gets it as one more adapter; any other model is wrapped."""
    adapter_path = Path(adapter).expanduser()
    if not (adapter_path / "adapter_config.json").exists():
        raise ModelLoadError(f"adapter folder {adapter_path} has no adapter_config.json")
    from peft import PeftModel  # start-up cost: peft loads ~3 s of torch.distributed; only adapters need it

    try:
        with quiet_peft():
            if isinstance(lm, PeftModel):
                lm.load_adapter(str(adapter_path), adapter_name=name or "default")
                return lm
            if name is None:
                return PeftModel.from_pretrained(lm, str(adapter_path))
            return PeftModel.from_pretrained(lm, str(adapter_path), adapter_name=name)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load adapter '{adapter}': {str(exc).splitlines()[0]}") from exc


def load_model_adapters(model: str | None, adapters: dict[str, str], dtype: str = "auto",
                        device: str = "auto", quantize: str = "off", decoding: str = REFERENCE_MODE,
                        vocab: str = "full") -> LoadedModel:
    """One base model with several named peft adapters (name -> folder) in one PeftModel, for
    callers that switch per request (`requests.Request.adapter`; the server's per-pair adapters).
    The first adapter is active after loading; with no adapters this is `load_model(model)`."""
    where = resolve_device(device)
    quantize = check_quantize(quantize, where, resolve_dtype(dtype, where))
    check_vocab(vocab)
    if quantize == "gguf":
        return _load_gguf(model, adapters, "off", decoding, device, vocab)
    loaded = load_model(model, None, dtype, device)
    lm = loaded.model
    for name, path in adapters.items():
        lm = _attach_adapter(lm, path, name)
    if adapters:
        lm.set_adapter(next(iter(adapters)))
    lm.eval()
    lm = restrict_vocab(lm, loaded.tokenizer, vocab)
    if quantize == "int8":
        lm = quantize_int8(lm)
    summary = ", ".join(f"{name}={path}" for name, path in adapters.items()) or None
    return LoadedModel(lm, loaded.tokenizer, loaded.name, summary)
