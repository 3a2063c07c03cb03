"""Optional rollout backend: sample GRPO rollouts with vLLM (`seqpo train --rollout-backend vllm`).

Imported only when chosen; needs a CUDA machine and `pip install -e '.[vllm]'`. The policy being
trained is "base with the start adapter merged + a trainable LoRA", so vLLM serves the merged base
(saved once to OUT/vllm-base) and, at every step, the current LoRA saved to OUT/vllm-lora/step-N as
a LoRARequest; the training model stays in transformers/accelerate.

It implements the Generator interface the rollout driver uses (`complete`, `prompt_ids`,
`do_sample`), with two approximations of the transformers path, both documented here:
- the per-row "stop after N whole target units" rule has no vLLM equivalent: rows stop at the end
  of the line or the token budget, and the policy trims the segment to its allowed units as usual;
- "the last step must write" uses vLLM's `min_tokens=1`, which blocks the stop/EOS token ids at
  the first position (the line-end tokens are passed as stop token ids).
Log-probs come from vLLM's sampler (with temperature 1.0 they are the model's own distribution).
This backend has not been run in this repository's CI (no GPU there).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import MissingExtraError
from ..generation import line_end_ids, prompt_ids
from ..requests import Completion, Request


class VLLMGenerator:
    do_sample = True

    def __init__(self, base_dir: str | Path, tokenizer, temperature: float = 1.0, max_lora_rank: int = 64,
                 chat=None):
        try:
            from vllm import LLM  # optional extra (seqpo[vllm], CUDA only)
        except ImportError as exc:
            raise MissingExtraError("--rollout-backend vllm needs vLLM on a CUDA machine: pip install -e '.[vllm]' "
                                    "in the seqpo clone") from exc
        self.tokenizer = tokenizer
        self.chat = chat  # prompts.ChatFormat: the same prompt ids as the transformers path
        self.temperature = temperature
        self.line_end = line_end_ids(tokenizer)
        # the training model shares the GPU: vLLM takes a third of it, not its default 90%
        self.llm = LLM(model=str(base_dir), enable_lora=True, max_lora_rank=max_lora_rank, dtype="bfloat16",
                       gpu_memory_utilization=0.3)
        self.lora = None

    def set_adapter(self, path: str | Path, step: int) -> None:
        """Serve the LoRA saved at `path` for the rollouts of `step` (a new id makes vLLM load it)."""
        from vllm.lora.request import LoRARequest  # optional extra (seqpo[vllm])

        self.lora = LoRARequest(f"policy-step-{step}", step + 1, str(path))

    def prompt_ids(self, request: Request) -> list[int]:
        return prompt_ids(self.tokenizer, request, self.chat)

    def complete(self, requests: list[Request]) -> list[Completion]:
        from vllm import SamplingParams  # optional extra (seqpo[vllm])

        t0 = time.perf_counter()
        prompts = [{"prompt_token_ids": self.prompt_ids(r)} for r in requests]
        params = [SamplingParams(temperature=self.temperature, top_p=1.0, top_k=-1, max_tokens=r.max_new_tokens,
                                 stop=["\n"] if r.stop_at_newline else None, stop_token_ids=self.line_end,
                                 include_stop_str_in_output=True, min_tokens=1 if r.must_write else 0, logprobs=0)
                  for r in requests]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        elapsed = (time.perf_counter() - t0) * 1000
        completions = []
        for prompt, out in zip(prompts, outputs):
            seq = out.outputs[0]
            ids = list(seq.token_ids)
            logprobs = [step[tok].logprob for step, tok in zip(seq.logprobs or [], ids)]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            hit = "\n" in text or seq.finish_reason == "stop"
            completions.append(Completion(text.split("\n")[0], len(ids), elapsed, hit, ids,
                                          prompt["prompt_token_ids"], logprobs))
        return completions
