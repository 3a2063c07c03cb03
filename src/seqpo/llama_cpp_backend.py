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
import ctypes
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .bundled import assemble, build_cache_dir, bundled_base, cache_dir, thread_count
from .errors import ModelLoadError, SettingsError
from .generation import forbid_line_end, line_end_ids, prompt_ids, stop_reached
from .requests import NO_ADAPTER, Completion, Request
from .stream import common_prefix

CONTEXT_TOKENS = 4096  # tokens a llama.cpp context holds (a longer prompt is a one-line error)
BATCH_TOKENS = 512  # prompt ids per llama.cpp forward pass
CONTEXTS = 4  # contexts kept per model: interleaved episodes (sessions, a batched eval) each keep their cache


def needs_llama_cpp():
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


class _Context:
    """One llama.cpp context on the shared model: the ids its KV cache holds, and the adapter they
    ran under. llama-cpp-python's `Llama` owns one context; more on the same weights take its
    intermediate layer (`llama_cpp._internals`, pinned with the package version)."""

    def __init__(self, llama_cpp, model, params, n_batch: int):
        from llama_cpp import _internals

        self.llama_cpp, self.n_batch = llama_cpp, n_batch
        self.ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.ids: list[int] = []
        self.adapter: object = _UNSET
        self.used = 0  # when it last ran (a counter), for least-recently-used reuse

    def run(self, ids: list[int]) -> None:
        """Run `ids` after what the cache holds (llama.cpp's batches of at most n_batch)."""
        for i in range(0, len(ids), self.n_batch):
            chunk = ids[i : i + self.n_batch]
            self.batch.set_batch(batch=chunk, n_past=len(self.ids), logits_all=False)
            self.ctx.decode(self.batch)
            self.ids.extend(chunk)

    def keep(self, n: int) -> None:
        """Drop the cache after its first `n` ids."""
        if n < len(self.ids):
            self.ctx.kv_cache_seq_rm(-1, n, -1)
            del self.ids[n:]

    def logits(self, n_vocab: int) -> np.ndarray:
        """The logits after the last id run (a view of llama.cpp's buffer, valid until the next run)."""
        return np.ctypeslib.as_array(self.llama_cpp.llama_get_logits_ith(self.ctx.ctx, -1), shape=(n_vocab,))


_UNSET = object()


class LlamaCppModel:
    """A GGUF base on llama.cpp with named LoRA adapters, and up to `contexts` contexts on its
    weights, each keeping the cache of the prompts it last ran. A request goes to the context that
    holds the longest prefix of its ids under its adapter, so interleaved episodes (server sessions,
    a batched eval) each keep their own cache. `active` is the adapter a request without one runs
    on; NO_ADAPTER runs the bare base."""

    def __init__(self, path: Path, adapters: dict[str, Path], threads: int | None = None, contexts: int = CONTEXTS):
        self.llama_cpp = needs_llama_cpp()
        self.path, self.adapter_files, self.max_contexts = path, adapters, contexts
        self.threads = threads or thread_count()
        self.active = next(iter(adapters), None)
        with _load_error(path), _quiet():
            self.llama = self.llama_cpp.Llama(
                model_path=str(path), n_ctx=CONTEXT_TOKENS, n_batch=BATCH_TOKENS, n_threads=self.threads,
                n_threads_batch=self.threads, verbose=False, swa_full=True)
        self.n_vocab = self.llama.n_vocab()
        self._vocab = self.llama_cpp.llama_model_get_vocab(self.llama.model)
        self._adapters: dict[str, object] = {}
        for name, file in adapters.items():
            with _load_error(path, name), _quiet():
                pointer = self.llama_cpp.llama_adapter_lora_init(self.llama.model, str(file).encode("utf-8"))
                if pointer is None:
                    raise ValueError(f"llama.cpp refused the adapter file {file}")
            self._adapters[name] = pointer
        self._contexts: list[_Context] = []
        self._clock = 0

    def ends_generation(self, token: int) -> bool:
        """The token ends a generation (the GGUF's end-of-generation tokens: Gemma's <eos> and
        <end_of_turn>, as transformers' generation config lists them)."""
        return bool(self.llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def completer(self, tokenizer, batch_size: int = 1, chat=None) -> "LlamaCppGenerator":
        """What continues prompts on this model (`generation.completer_for`)."""
        return LlamaCppGenerator(self, tokenizer, batch_size, chat)

    def adapter_of(self, request: Request) -> str | None:
        if request.adapter is None:
            return self.active
        if request.adapter == NO_ADAPTER:
            return None
        if request.adapter not in self.adapter_files:
            raise ValueError(f"unknown adapter '{request.adapter}' (loaded: {', '.join(self.adapter_files) or 'none'})")
        return request.adapter

    def holding(self, ids: list[int], adapter: str | None) -> tuple[_Context, int]:
        """A context to run `ids` on under `adapter`, and how many of them it already holds (at
        most all but the last, whose logits are needed): the one holding the longest prefix (of
        equals, the least recently used), if that keeps at least half of what it holds: the same
        episode's next step (new source words change the prompt's end). A context that shares only
        the few-shot prefix holds another episode: while fewer than `max_contexts` exist, a new one
        is made instead."""
        scored = [(min(common_prefix(c.ids, ids), len(ids) - 1) if c.adapter == adapter else 0, -c.used, c)
                  for c in self._contexts]
        best = max(scored, key=lambda x: x[:2], default=None)
        if best is None or (len(self._contexts) < self.max_contexts and 2 * best[0] < len(best[2].ids)):
            with _load_error(self.path), _quiet():
                context = _Context(self.llama_cpp, self.llama._model, self.llama.context_params, BATCH_TOKENS)
            self._contexts.append(context)
            kept = 0
        else:
            kept, _, context = best
        if context.adapter != adapter:
            self._use_adapter(context, adapter)
            kept = 0
        self._clock += 1
        context.used = self._clock
        context.keep(kept)
        return context, kept

    def _use_adapter(self, context: _Context, adapter: str | None) -> None:
        llama_cpp = self.llama_cpp
        if adapter is None:
            code = llama_cpp.llama_set_adapters_lora(context.ctx.ctx, None, 0, None)
        else:
            code = llama_cpp.llama_set_adapters_lora(context.ctx.ctx, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(
                self._adapters[adapter]), 1, (ctypes.c_float * 1)(1.0))
        if code != 0:
            raise RuntimeError(f"llama.cpp could not switch to adapter {adapter!r}")
        context.keep(0)
        context.adapter = adapter


@contextlib.contextmanager
def _load_error(path: Path, adapter: str | None = None):
    """What llama.cpp raises while loading, as the one-line error of a model that cannot load."""
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp cannot load {path.name}{' with adapter ' + adapter if adapter else ''}: "
                             f"{exc}") from exc


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
    """`complete(requests)` on a `LlamaCppModel`, one request after another (a llama.cpp context
    runs one sequence here; what it saves is per token): each runs only the ids after the prefix
    its context already holds (`LlamaCppModel.holding`)."""

    caches_prefix = True  # needs no engine episode to reuse a sentence's prompt (`live_engines`)

    def __init__(self, model: LlamaCppModel, tokenizer, batch_size: int = 1, chat=None):
        self.model, self.tokenizer, self.chat, self.batch_size = model, tokenizer, chat, batch_size
        model.max_contexts = max(model.max_contexts, batch_size)  # a batch's episodes keep a cache each
        self.line_end = line_end_ids(tokenizer)
        self.tokens_processed = 0  # tokens run through the model (prompt tokens not cached + generated)

    def prompt_ids(self, request: Request) -> list[int]:
        return prompt_ids(self.tokenizer, request, self.chat)

    def complete(self, requests: list[Request]) -> list[Completion]:
        return [self._complete(request) for request in requests]

    def feed(self, ids: list[int], adapter: str | None) -> _Context:
        """A context holding `ids` under `adapter`, their last logits ready."""
        if len(ids) >= CONTEXT_TOKENS:
            raise ValueError(f"a prompt of {len(ids)} tokens exceeds --quantize gguf's context of {CONTEXT_TOKENS}")
        context, kept = self.model.holding(ids, adapter)
        context.run(ids[kept:])
        self.tokens_processed += len(ids) - kept
        return context

    def _complete(self, request: Request) -> Completion:
        t0 = time.perf_counter()
        ids = self.prompt_ids(request)
        budget = min(request.max_new_tokens, CONTEXT_TOKENS - len(ids) - 1)
        context = self.feed(ids, self.model.adapter_of(request))
        out: list[int] = []
        ends = self.model.ends_generation
        while True:
            logits = torch.from_numpy(context.logits(self.model.n_vocab))[None]
            if not out:  # the first-token rule of every decoding path
                logits = forbid_line_end(logits, [0] if request.must_write else [], self.line_end)
            tok = int(logits[0].argmax())
            out.append(tok)
            text = self.tokenizer.decode(out, skip_special_tokens=True)
            if ends(tok) or stop_reached(text, len(out), request) or len(out) >= budget:
                break
            context.run([tok])
        self.tokens_processed += len(out)
        hit = "\n" in text or ends(out[-1])  # generation stops at the first end token
        kept = text.split("\n")[0] if request.stop_at_newline else text
        return Completion(kept, len(out), (time.perf_counter() - t0) * 1000, hit, out, ids, None)


def gguf_tokenizer(path: Path):
    """The HF tokenizer a GGUF file carries (transformers reads it; the bundled bases use the
    tokenizer saved beside their dequantized copy, the same one)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # whatever the GGUF parser raises: this file has no usable tokenizer
        raise ModelLoadError(f"cannot read the tokenizer of {path.name}: {str(exc).splitlines()[0]}") from exc


__all__ = ["CONTEXT_TOKENS", "LlamaCppGenerator", "LlamaCppModel", "gguf_path", "gguf_tokenizer", "lora_gguf", "needs_llama_cpp"]
