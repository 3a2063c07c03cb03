"""Read/write policies: offline, wait-k, the LLM-decides SeqPO policy, and re-translation."""

from ..engine import engine_class, modes_where
from ..errors import SettingsError
from .base import Policy, State
from .llm import LLMPolicy
from .offline import OfflinePolicy
from .retranslate import RetranslatePolicy
from .wait_k import WaitKPolicy

# the registry: every policy class, in the order commands list them
POLICIES: tuple[type[Policy], ...] = (OfflinePolicy, WaitKPolicy, LLMPolicy, RetranslatePolicy)
POLICY_NAMES = tuple(p.name for p in POLICIES)


def make_policy(name: str, k: int = 3, chunk: int = 1, few_shot: bool = True) -> Policy:
    if name == "offline":
        return OfflinePolicy(few_shot=few_shot)
    if name == "wait-k":
        return WaitKPolicy(k=k, chunk=chunk, few_shot=few_shot)
    if name == "llm":
        return LLMPolicy(few_shot=few_shot)
    if name == "retranslate":
        return RetranslatePolicy(few_shot=few_shot)
    raise SettingsError(f"unknown policy '{name}' (choose from {', '.join(POLICY_NAMES)})")


def check_decoding(policy: str, decoding: str) -> None:
    """Refuse a policy the decoding engine cannot run: re-translation's prompts drop the target shown
    so far, which an incremental mode (one transcript per episode, only ever extended) cannot
    express. Asking the engine loads torch, so only a policy that retranslates asks."""
    if any(p.name == policy and p.retranslates for p in POLICIES) and engine_class(decoding).incremental:
        raise SettingsError(f"policy {policy} needs {' or '.join(modes_where(incremental=False))} decoding, "
                            f"not {decoding}")


__all__ = ["Policy", "State", "LLMPolicy", "OfflinePolicy", "RetranslatePolicy", "WaitKPolicy", "check_decoding",
           "make_policy", "POLICIES", "POLICY_NAMES"]
