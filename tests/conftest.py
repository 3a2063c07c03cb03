"""Shared fixtures: tiny randomly initialised models (Gemma-3; Llama and Qwen2 for the architecture
tests) with a tokenizer trained here, so end-to-end paths run in seconds without the real model."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wmt"

CORPUS = [
    "The weather is nice today. I would like a cup of tea, please.",
    "Our team released the new version of the software last week.",
    "Das Wetter ist heute schön. Ich hätte gern eine Tasse Tee.",
    "Unser Team hat letzte Woche die neue Version der Software veröffentlicht.",
    "今天天气很好。请给我一杯茶。我们团队上周发布了新版本的软件。",
    "Translate from English to Chinese in a streaming style:\nEnglish: hello\nChinese: 你好\n\n",
    "Translate from English to German in a streaming style:\nEnglish: hello\nGerman: Hallo\n\n",
]


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained on CORPUS (BOS added, left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", padding_side="left")


# A minimal chat template (the shape of Qwen2's ChatML) for the instruction-tuned stand-in.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ARCHITECTURES = ("gemma3", "llama", "qwen2")


def build_tiny_model(path: Path, arch: str = "gemma3", chat_template: bool = False) -> Path:
    """A tiny random causal LM of architecture `arch` (gemma3: full and sliding-window layers;
    llama: one mask for every layer; qwen2: layer types, all full) with the tiny tokenizer."""
    import torch
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    hf_tok = build_tiny_tokenizer()
    if chat_template:
        hf_tok.chat_template = TINY_CHAT_TEMPLATE
    torch.manual_seed(0)
    common = dict(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                  pad_token_id=hf_tok.pad_token_id, bos_token_id=hf_tok.bos_token_id,
                  eos_token_id=hf_tok.eos_token_id)
    if arch == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(**common, head_dim=16, sliding_window=64))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, head_dim=16))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    else:
        raise ValueError(arch)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session", params=ARCHITECTURES)
def tiny_arch_dir(request, tmp_path_factory) -> Path:
    """The tiny model in each architecture (gemma3, llama, qwen2); qwen2 has a chat template,
    as instruction-tuned checkpoints do."""
    return build_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param,
                            chat_template=request.param == "qwen2")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from seqpo.model import load_model

    return load_model(str(tiny_model_dir))


def build_tiny_adapter(model_dir: Path, path: Path, seed: int) -> Path:
    """A random (not identity) LoRA adapter for the tiny model, so its outputs differ from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    from seqpo.model import quiet_peft

    with quiet_peft():
        get_peft_model(base, config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Two named random adapters for the tiny model (named after the pairs they stand in for)."""
    root = tmp_path_factory.mktemp("tiny-adapters")
    return {name: build_tiny_adapter(tiny_model_dir, root / name, seed)
            for seed, name in enumerate(("en-de", "en-zh"), start=1)}


# two short en-zh lines written by the test suite itself (the architecture and chat-template tests)
SENTENCES = ["The weather is nice today.", "Our team released the new version."]
REFERENCES = ["今天天气很好。", "我们团队发布了新版本。"]


@pytest.fixture(scope="session")
def two_line_files(tmp_path_factory) -> tuple[Path, Path]:
    """SENTENCES and REFERENCES as a source and a reference file."""
    root = tmp_path_factory.mktemp("two-lines")
    src, ref = root / "s.en", root / "s.zh"
    src.write_text("\n".join(SENTENCES) + "\n")
    ref.write_text("\n".join(REFERENCES) + "\n")
    return src, ref


@pytest.fixture
def en_zh_files() -> tuple[Path, Path]:
    return FIXTURES / "tiny.en-zh.en", FIXTURES / "tiny.en-zh.zh"


# Where a process keeps per-user files: the home folder itself, the XDG folders, and the caches and
# config of the libraries the tests load (Hugging Face, matplotlib). The gguf packages assemble into
# ~/.cache, transformers and matplotlib write config and caches, and SEQPO_CACHE may point at the
# user's real model cache: a test must never write into any of them, whatever the environment says.
_SESSION_HOME: Path | None = None


def _home_paths(root: Path) -> dict[str, str]:
    return {"HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "home" / ".cache"),
            "XDG_CONFIG_HOME": str(root / "home" / ".config"), "XDG_DATA_HOME": str(root / "home" / ".local" / "share"),
            "HF_HOME": str(root / "home" / ".cache" / "huggingface"), "MPLCONFIGDIR": str(root / "home" / ".config" / "matplotlib"),
            "SEQPO_CACHE": str(root / "cache")}


def pytest_configure(config):
    # Before any test module is imported: libraries read some of these paths once, at import time
    # (huggingface_hub's cache, matplotlib's config), so per-test settings alone would come too late.
    global _SESSION_HOME
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="seqpo-tests-"))
    os.environ.update(_home_paths(_SESSION_HOME))
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded at run time, in tests least of all


def pytest_unconfigure(config):
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_user_paths(tmp_path, monkeypatch):
    """Every test gets its own home, XDG folders and seqpo cache under its tmp_path, so no test
    writes where the user keeps data and no test sees another's cache."""
    for name, value in _home_paths(tmp_path).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def real_model_copy(tmp_path_factory) -> Path:
    """A seqpo cache holding the real bundled model (the GGUF dequantized once, ~1 min), made under
    the test run's tmp folder and then made read-only: the slow tests share it and cannot change
    it, and no test depends on what the user's own cache holds."""
    from seqpo.model import bundled_model_dir

    root = tmp_path_factory.mktemp("real-model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPO_CACHE", str(root))
        bundled_model_dir()
    for path in (root, *root.rglob("*")):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return root


@pytest.fixture
def real_model(real_model_copy, monkeypatch) -> Path:
    """For the slow tests: the bundled model resolves to the shared read-only copy."""
    monkeypatch.setenv("SEQPO_CACHE", str(real_model_copy))
    return real_model_copy
