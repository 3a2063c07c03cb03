"""`--quantize gguf`: the model's GGUF weights as they ship (the bundled Gemma: Q4_K_M) run by
llama.cpp (`llama-cpp-python`) on the CPU, behind the same completer interface as the torch
`Generator` (`complete(requests)`), with the shipped LoRA adapters converted for it (`gguf_lora`).

Why: on a laptop's few cores a live translation is bound by memory traffic; llama.cpp's quantized
matrix kernels read 4-6 bits per weight where the torch path reads 32 (8 with `--quantize int8`).
llama.cpp also keeps the KV of the last prompt: a step whose prompt extends the previous one runs
only its new tokens (what `--decoding cached` does on the torch path), so `reencode` and `cached`
are both this completer. append/slots need the torch engines and are refused.

Greedy only (inference): the same first-token rule (`must_write`) and stop rules as `Generator`
(`generation.stop_reached`); prompts are tokenized by the model's HF tokenizer (`prompt_ids`), the
one place prompt text becomes ids, so both backends see the same ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bundled import assemble, bundled_base, cache_dir
from .errors import ModelLoadError, SettingsError
from .model_names import DEFAULT_MODEL
from .generation import line_end_ids, prompt_ids, stop_reached
from .requests import NO_ADAPTER, Completion, Request

log = logging.getLogger(__name__)

CONTEXT_TOKENS = 8192  # llama.cpp's KV cache per adapter; a longer prompt is a one-line error


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:  # an optional part: its own error, not a traceback
        raise SettingsError("--quantize gguf needs llama-cpp-python: pip install -e '.[llama-cpp]' "
                            "(it compiles llama.cpp, a few minutes)") from exc
    return llama_cpp


def gguf_path(model: str | None) -> Path:
    """The GGUF file `--model` names: a bundled base's (joined once into the seqpo cache) or a
    .gguf file; anything else is a `SettingsError`."""
    base = bundled_base(model)
    if base is not None:
        return assemble(base, cache_dir() / "gguf")
    path = Path(str(model)).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path
    raise SettingsError(f"--quantize gguf runs a GGUF file: a bundled base or a path to a .gguf, not {model!r}")


def lora_gguf(adapter: str, base: Path) -> Path:
    """The llama.cpp copy of the peft adapter folder `adapter`, converted once and cached under
    the seqpo cache by the hash of the adapter's files and the base file's name."""
    from .gguf_lora import write_lora_gguf
    from .model import build_cache_dir  # start-up cost: torch; only a load gets here

    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").exists():
        raise ModelLoadError(f"adapter folder {folder} has no adapter_config.json")
    digest = hashlib.sha256(base.name.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (folder / name).exists():
            digest.update((folder / name).read_bytes())
    target = cache_dir() / "gguf-lora" / digest.hexdigest()[:16]
    build_cache_dir(target, lambda into: write_lora_gguf(folder, base, into / "adapter.gguf"))
    return target / "adapter.gguf"


class LlamaCppModel:
    """A GGUF base on llama.cpp with named LoRA adapters, one llama.cpp context per adapter (each
    keeps its own prompt cache; the weights are memory-mapped once by the OS). `active` is the
    adapter a request without one runs on; NO_ADAPTER runs the bare base."""

    def __init__(self, path: Path, adapters: dict[str, Path], threads: int | None = None):
        self.path, self.adapter_files = path, adapters
        self.threads = threads or int(os.environ.get("SEQPO_THREADS", os.cpu_count() or 1))
        self.active = next(iter(adapters), None)
        self._contexts: dict[str | None, object] = {}
        self.context(self.active)  # load now: a broken file fails at load time, not mid-stream

    def completer(self, tokenizer, batch_size: int = 1, chat=None) -> "LlamaCppGenerator":
        """What continues prompts on this model (`generation.completer_for`)."""
        return LlamaCppGenerator(self, tokenizer, batch_size, chat)

    def context(self, adapter: str | None):
        """The llama.cpp context of `adapter` (None: the bare base), made on first use."""
        if adapter not in self._contexts:
            llama_cpp = _llama_cpp()
            lora = str(self.adapter_files[adapter]) if adapter is not None else None
            try:
                with _quiet():
                    self._contexts[adapter] = llama_cpp.Llama(
                        model_path=str(self.path), n_ctx=CONTEXT_TOKENS, n_batch=512, n_threads=self.threads,
                        n_threads_batch=self.threads, lora_path=lora, verbose=False, swa_full=True)
            except (ValueError, RuntimeError) as exc:
                raise ModelLoadError(f"llama.cpp cannot load {self.path.name}"
                                     f"{' with adapter ' + adapter if adapter else ''}: {exc}") from exc
        return self._contexts[adapter]

    def adapter_of(self, request: Request) -> str | None:
        if request.adapter is None:
            return self.active
        if request.adapter == NO_ADAPTER:
            return None
        if request.adapter not in self.adapter_files:
            raise ValueError(f"unknown adapter '{request.adapter}' (loaded: {', '.join(self.adapter_files) or 'none'})")
        return request.adapter


@contextlib.contextmanager
def _quiet():
    """llama.cpp writes its load notes (the SWA cache, each LoRA tensor's buffer) to the process's
    stderr even with verbose=False; a load's notes go to a temporary file instead, and the last of
    them comes back in the error when the load fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as notes:
        os.dup2(notes.fileno(), 2)
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            os.dup2(saved, 2)
            notes.seek(0)
            lines = [line for line in notes.read().decode("utf-8", "replace").splitlines() if line.strip()]
            raise type(exc)(f"{exc}{': ' + lines[-1].strip() if lines else ''}") from exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LlamaCppGenerator:
    """`complete(requests)` on a `LlamaCppModel`, one request after another (llama.cpp's batch is
    one sequence here; what it saves is per token). Each context keeps the KV of its last prompt
    and output: a request runs only the ids after the longest prefix it shares with them."""

    do_sample, temperature, top_p = False, 1.0, 1.0
    caches_prefix = True  # needs no engine episode to reuse a sentence's prompt (`live_engines`)

    def __init__(self, model: LlamaCppModel, tokenizer, batch_size: int = 1, chat=None):
        self.model, self.tokenizer, self.chat, self.batch_size = model, tokenizer, chat, batch_size
        self.line_end = line_end_ids(tokenizer)
        self.tokens_processed = 0  # tokens run through the model (prompt tokens not cached + generated)

    def prompt_ids(self, request: Request) -> list[int]:
        return prompt_ids(self.tokenizer, request, self.chat)

    def complete(self, requests: list[Request]) -> list[Completion]:
        return [self._complete(request) for request in requests]

    def _complete(self, request: Request) -> Completion:
        t0 = time.perf_counter()
        llm = self.model.context(self.model.adapter_of(request))
        ids = self.prompt_ids(request)
        if len(ids) + request.max_new_tokens > CONTEXT_TOKENS:
            raise ValueError(f"a prompt of {len(ids)} tokens (+{request.max_new_tokens} new) exceeds "
                             f"--quantize gguf's context of {CONTEXT_TOKENS} tokens")
        self._feed(llm, ids)
        out: list[int] = []
        eog = self._eog(llm)
        while True:
            logits = self._last_logits(llm)
            if not out and request.must_write:
                logits = logits.copy()
                logits[self.line_end] = -np.inf
            tok = int(np.argmax(logits))
            out.append(tok)
            text = self.tokenizer.decode(out, skip_special_tokens=True)
            if tok in eog or stop_reached(text, len(out), request):
                break
            llm.eval([tok])
        self.tokens_processed += len(out)
        hit = "\n" in text or any(t in eog for t in out[: request.max_new_tokens])
        kept = text.split("\n")[0] if request.stop_at_newline else text
        return Completion(kept, len(out), (time.perf_counter() - t0) * 1000, hit, out, ids, None)

    def _feed(self, llm, ids: list[int]) -> None:
        """Make the context hold `ids` with their last logits: keep the longest prefix they share
        with what it holds (at least the last id runs again, for its logits) and run the rest."""
        held = llm.input_ids[: llm.n_tokens]
        keep = 0
        for a, b in zip(held, ids[:-1]):
            if a != b:
                break
            keep += 1
        llm.n_tokens = keep  # eval removes the KV from here on before running the new ids
        llm.eval(ids[keep:])
        self.tokens_processed += len(ids) - keep

    @staticmethod
    def _last_logits(llm) -> np.ndarray:
        """The logits after the last id run (a view of llama.cpp's buffer, valid until the next
        run): `Llama.eval` keeps none unless every position's are kept (n_ctx x 262k floats)."""
        llama_cpp = _llama_cpp()
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))

    @staticmethod
    def _eog(llm) -> frozenset[int]:
        eos = {llm.token_eos()}
        return frozenset(t for t in eos if t is not None and t >= 0)

    @contextlib.contextmanager
    def on_adapter(self, adapter: str | None):
        yield


def _gguf_tokenizer(path: Path):
    """The HF tokenizer a GGUF file carries (transformers reads it; the bundled bases use the
    tokenizer saved beside their dequantized copy, the same one)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # whatever the GGUF parser raises: this file has no usable tokenizer
        raise ModelLoadError(f"cannot read the tokenizer of {path.name}: {str(exc).splitlines()[0]}") from exc


def load_gguf(model: str | None, adapters: dict[str, str], chat_template: str, decoding: str, device: str):
    """`load_model(..., quantize="gguf")`: the GGUF of `model` on llama.cpp with `adapters`
    (name -> peft folder), as a `model.LoadedModel` whose model is a `LlamaCppModel`."""
    from .engine import engine_class
    from .model import LoadedModel, load_tokenizer, resolve_device, uses_chat_template
    from .prompts import chat_format

    if engine_class(decoding).incremental:
        raise SettingsError(f"--quantize gguf runs reencode or cached decoding (llama.cpp reuses the prompt's "
                            f"cached prefix itself), not {decoding}")
    if resolve_device(device) != "cpu":
        raise SettingsError("--quantize gguf runs on the CPU (llama.cpp's CPU build): use --device cpu")
    _llama_cpp()  # a missing package fails before any conversion
    path = gguf_path(model)
    files = {name: lora_gguf(folder, path) for name, folder in adapters.items()}
    lm = LlamaCppModel(path, files)
    tokenizer = load_tokenizer(model) if bundled_base(model) is not None else _gguf_tokenizer(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = chat_format(tokenizer) if uses_chat_template(chat_template, model, decoding, tokenizer) else None
    summary = ", ".join(f"{name}={folder}" for name, folder in adapters.items()) or None
    return LoadedModel(lm, tokenizer, model or DEFAULT_MODEL, summary, chat)


__all__ = ["CONTEXT_TOKENS", "LlamaCppGenerator", "LlamaCppModel", "gguf_path", "load_gguf", "lora_gguf"]
