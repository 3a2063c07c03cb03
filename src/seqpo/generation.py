"""Batched text continuation with a cached few-shot prefix.

Every policy step asks the LM to continue a prompt `prefix + prompt`, where `prefix` (instructions
and few-shot examples) is shared by all steps and sentences. Its KV cache is computed once and
copied into each batch, so a step only runs its own tokens through the model; requests that
share a prefix are batched (left-padded after the prefix; positions come from the attention mask,
so padding never shifts a token's position).

transformers' `generate` does the decoding; what it lacks is a per-row stop rule in target units
("stop after 3 words" for wait-k, "stop at the end of the line" for the SeqPO format), which is
the small StoppingCriteria below.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .prompts import ChatFormat
from .requests import NO_ADAPTER, Completion, Request
from .stream import count_units


def line_end_ids(tokenizer) -> list[int]:
    """Token ids that end the line at once: the newline pieces and EOS."""
    ids = {tokenizer.eos_token_id}
    for text in ("\n", "\n\n"):
        pieces = tokenizer(text, add_special_tokens=False).input_ids
        if len(pieces) == 1:
            ids.add(pieces[0])
    return sorted(i for i in ids if i is not None)


def forbid_line_end(scores: torch.Tensor, rows: list[int], banned: list[int]) -> torch.Tensor:
    """The first-token rule of requests that `must_write`: in `rows` of scores [B, V], the tokens
    that would end the line at once get no probability. Every decoding path applies it."""
    if rows:
        scores = scores.clone()  # the engine's logits are inference tensors: no in-place edits
        r = torch.tensor(rows, device=scores.device)
        b = torch.tensor(banned, device=scores.device)
        scores[r.unsqueeze(1), b.unsqueeze(0)] = float("-inf")
    return scores


class _NoEmptyFinish(LogitsProcessor):
    """`forbid_line_end` at the first generated position of a `generate` call.

    transformers' `begin_suppress_tokens` does this for a whole batch; a batch here mixes last
    steps (which must finish the sentence) with mid-sentence steps (where an empty line is a wait).
    """

    def __init__(self, start: int, rows: list[int], banned: list[int]):
        self.start, self.rows, self.banned = start, rows, banned

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.start:
            return forbid_line_end(scores, self.rows, self.banned)
        return scores


class _LogProbRecorder(LogitsProcessor):
    """Log-probabilities of the sampled tokens under the distribution they were drawn from.

    transformers applies user processors before its sampling warpers (temperature, top-k, top-p),
    and the Generator samples with top-k off and top-p 1, so that distribution is
    log_softmax(scores / T) of the scores seen here (after the must-write rule). At each call the
    previous step's token is the last column of input_ids; `finish` picks up the last one.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.prev: torch.Tensor | None = None
        self.picked: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        if self.prev is not None:
            self.picked.append(self.prev.gather(1, input_ids[:, -1:])[:, 0])
        self.prev = torch.log_softmax(scores.float() / self.temperature, -1)
        return scores

    def finish(self, sequences: torch.Tensor, n_new: int) -> torch.Tensor:
        if self.prev is not None and len(self.picked) < n_new:
            self.picked.append(self.prev.gather(1, sequences[:, -1:])[:, 0])
        self.prev = None
        if not self.picked:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self.picked, 1).cpu()


class _StopRule(StoppingCriteria):
    """Per-row stop: a newline was generated, or enough whole target units were written."""

    def __init__(self, tokenizer, start: int, requests: list[Request]):
        self.tokenizer, self.start, self.requests = tokenizer, start, requests

    def __call__(self, input_ids, scores, **kwargs):
        done = [stop_reached(self.tokenizer.decode(row[self.start :], skip_special_tokens=True),
                             len(row) - self.start, req)
                for row, req in zip(input_ids, self.requests)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def stop_reached(text: str, new_tokens: int, req: Request) -> bool:
    """A row is done: it ended the line, used its token budget, or wrote enough whole units."""
    if ("\n" in text and req.stop_at_newline) or new_tokens >= req.max_new_tokens:
        return True
    if req.max_units is None:
        return False
    n = count_units(text, req.unit)
    # a word is only known to be complete once the next one has started
    return n > req.max_units if req.unit == "word" else n >= req.max_units


def shared_ids(tokenizer, prefix: str, chat: ChatFormat | None = None) -> list[int]:
    """The ids of a request's shared prefix (KV-cached): BOS + prefix; in a chat, the template's head
    + prefix (the template writes its own special tokens, BOS included: none are added)."""
    if chat is None:
        return tokenizer(prefix).input_ids
    return _text_ids(tokenizer, chat.head + prefix)


def own_ids(tokenizer, prompt: str, chat: ChatFormat | None = None) -> list[int]:
    """The ids of a request's own prompt after its prefix; in a chat, the rest of the user turn and
    the turn change, then the target line (tokenized apart, as a completion follows it)."""
    if chat is None:
        return _text_ids(tokenizer, prompt)
    user, line = chat.split(prompt)
    return _text_ids(tokenizer, user + chat.tail) + _text_ids(tokenizer, line)


def prompt_ids(tokenizer, request: Request, chat: ChatFormat | None = None) -> list[int]:
    """The token ids a request's model call starts from: the one place prompt text becomes ids
    (generation, the cached engine, SFT examples, rollouts and the vLLM backend all come here)."""
    return shared_ids(tokenizer, request.prefix, chat) + own_ids(tokenizer, request.prompt, chat)


def _text_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids if text else []


def completer_for(model, tokenizer, batch_size: int = 8, chat: ChatFormat | None = None):
    """What continues prompts on a loaded model (greedy): a `Generator`, or the completer a model
    of another backend brings (`--quantize gguf`: `llama_cpp_backend.LlamaCppGenerator`)."""
    own = getattr(model, "completer", None)
    if own is not None:
        return own(tokenizer, batch_size, chat)
    return Generator(model, tokenizer, batch_size=batch_size, chat=chat)


class Generator:
    """Continues prompts with an LM, batching requests that share a prefix."""

    def __init__(self, model, tokenizer, batch_size: int = 8, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, chat: ChatFormat | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.chat = chat  # the model's chat template around every prompt (None: the plain SeqPO prompt)
        self.batch_size = batch_size
        self.do_sample, self.temperature, self.top_p = do_sample, temperature, top_p
        # keyed by (adapter, prefix): the cached KV depends on the weights it was computed with
        self._prefix_cache: dict[tuple[str | None, str], tuple[torch.Tensor, object]] = {}
        self.line_end = line_end_ids(tokenizer)
        self.tokens_processed = 0  # tokens run through the model (prompt + generated)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _prefix(self, prefix: str, adapter: str | None = None):
        key = (adapter, prefix)
        if key not in self._prefix_cache:
            ids = torch.tensor([shared_ids(self.tokenizer, prefix, self.chat)], device=self.device)
            with torch.inference_mode():
                out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self.tokens_processed += ids.shape[1]
            self._prefix_cache[key] = (ids, out["cache"])  # transformers>=5 names it `cache`
        return self._prefix_cache[key]

    def complete(self, requests: list[Request]) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple[str | None, str], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((self._adapter_of(r), r.prefix), []).append(i)
        for (adapter, prefix), indices in groups.items():
            with self.on_adapter(adapter):
                for s in range(0, len(indices), self.batch_size):
                    batch = indices[s : s + self.batch_size]
                    for i, c in zip(batch, self._run_batch(prefix, [requests[i] for i in batch], adapter)):
                        results[i] = c
        return results  # type: ignore[return-value]

    def _is_peft(self) -> bool:
        return hasattr(self.model, "peft_config") and hasattr(self.model, "disable_adapter")

    def _adapter_of(self, request: Request) -> str | None:
        """The adapter a request runs on, by name (None: a plain model, or a request on a plain model
        that asks for no adapter). A request without one runs on the model's active adapter."""
        if not self._is_peft():
            if request.adapter not in (None, NO_ADAPTER):
                raise ValueError(f"request for adapter '{request.adapter}' on a model without adapters")
            return None
        if request.adapter is None:
            return self._active()
        if request.adapter != NO_ADAPTER and request.adapter not in self.model.peft_config:
            raise ValueError(f"unknown adapter '{request.adapter}' (loaded: {', '.join(self.model.peft_config)})")
        return request.adapter

    def _active(self) -> str:
        active = self.model.active_adapter
        return active if isinstance(active, str) else ",".join(active)

    @contextlib.contextmanager
    def on_adapter(self, adapter: str | None):
        """Run a group on `adapter`: activated if another one is active, or every adapter disabled."""
        if adapter is None:
            yield
        elif adapter == NO_ADAPTER:
            with self.model.disable_adapter():
                yield
        else:
            if self._active() != adapter:
                self.model.set_adapter(adapter)
            yield

    def prompt_ids(self, request: Request) -> list[int]:
        return prompt_ids(self.tokenizer, request, self.chat)

    def _suffix_ids(self, request: Request) -> list[int]:
        return own_ids(self.tokenizer, request.prompt, self.chat)

    def _run_batch(self, prefix: str, reqs: list[Request], adapter: str | None = None) -> list[Completion]:
        t0 = time.perf_counter()
        prefix_ids, prefix_kv = self._prefix(prefix, adapter)
        tok = self.tokenizer
        suffixes = [self._suffix_ids(r) for r in reqs]
        width = max(len(x) for x in suffixes)
        pad = tok.pad_token_id
        b = len(reqs)
        suffix = torch.full((b, width), pad, dtype=torch.long)
        suffix_mask = torch.zeros((b, width), dtype=torch.long)
        for row, ids in enumerate(suffixes):
            if ids:
                suffix[row, width - len(ids) :] = torch.tensor(ids)
                suffix_mask[row, width - len(ids) :] = 1
        input_ids = torch.cat([prefix_ids.expand(b, -1).cpu(), suffix], dim=1).to(self.device)
        mask = torch.cat([torch.ones_like(prefix_ids).expand(b, -1).cpu(), suffix_mask], 1).to(self.device)
        cache = copy.deepcopy(prefix_kv)  # generate extends the cache in place
        if b > 1:
            cache.batch_repeat_interleave(b)
        start = input_ids.shape[1]
        max_new = max(r.max_new_tokens for r in reqs)
        # top-k off when sampling: rollouts need the plain (temperature, top-p) distribution
        sampling = dict(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0) if self.do_sample \
            else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        processors = [_NoEmptyFinish(start, [i for i, r in enumerate(reqs) if r.must_write], self.line_end)]
        recorder = _LogProbRecorder(self.temperature) if self.do_sample else None
        if recorder:
            processors.append(recorder)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                cache=cache,
                max_new_tokens=max_new,
                stopping_criteria=StoppingCriteriaList([_StopRule(tok, start, reqs)]),
                logits_processor=LogitsProcessorList(processors),
                pad_token_id=pad,
                **sampling,
            )
        elapsed = (time.perf_counter() - t0) * 1000
        logprobs = recorder.finish(out, out.shape[1] - start) if recorder else None
        completions = []
        for i, (row, req) in enumerate(zip(out, reqs)):
            new = row[start:]
            text = tok.decode(new, skip_special_tokens=True)
            n_new = int((new != pad).sum())
            self.tokens_processed += n_new
            # rows that stopped early are filled with pad, which may be EOS: only an EOS inside the
            # row's own budget was generated by the model
            hit_newline = "\n" in text or bool((new[: req.max_new_tokens] == tok.eos_token_id).any())
            kept = text.split("\n")[0] if req.stop_at_newline else text
            keep = (new != pad).cpu()
            completions.append(Completion(kept, n_new, elapsed, hit_newline, new[new != pad].tolist(),
                                          prefix_ids[0].tolist() + suffixes[i],
                                          logprobs[i][keep].tolist() if logprobs is not None else None))
        self.tokens_processed += int(suffix_mask.sum())
        return completions
