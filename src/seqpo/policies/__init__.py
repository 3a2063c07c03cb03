"""Read/write policies: offline, wait-k and the LLM-decides SeqPO policy."""

from ..errors import SettingsError
from .base import Policy, State
from .llm import LLMPolicy
from .offline import OfflinePolicy
from .wait_k import WaitKPolicy

POLICY_NAMES = ("offline", "wait-k", "llm")


def make_policy(name: str, k: int = 3, chunk: int = 1, few_shot: bool = True) -> Policy:
    if name == "offline":
        return OfflinePolicy(few_shot=few_shot)
    if name == "wait-k":
        return WaitKPolicy(k=k, chunk=chunk, few_shot=few_shot)
    if name == "llm":
        return LLMPolicy(few_shot=few_shot)
    raise SettingsError(f"unknown policy '{name}' (choose from {', '.join(POLICY_NAMES)})")


__all__ = ["Policy", "State", "LLMPolicy", "OfflinePolicy", "WaitKPolicy", "make_policy", "POLICY_NAMES"]
