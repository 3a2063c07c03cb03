"""What `--model`, `--adapter`, `--dtype`, `--quantize`, `--vocab` and `--chat-template` name, decided without
loading a model: torch-free, so the settings (and `seqpo --help`) load without torch; `model.py` loads."""

from __future__ import annotations

from pathlib import Path

from .bundled import DEFAULT_BASE, bundled_base
from .errors import ModelLoadError

DEFAULT_MODEL = f"bundled:{DEFAULT_BASE}"
DTYPES = ("auto", "float32", "bfloat16", "float16")
CHAT_TEMPLATE_CHOICES = ("auto", "on", "off")
# `--quantize`: the weights as loaded, int8 linear layers (`quantize.py`), or the GGUF's own quantized
# weights on llama.cpp (`llama_cpp_backend.py`); the last two on the CPU
QUANTIZE = ("off", "int8", "gguf")
VOCABS = ("full", "seen")  # `--vocab`: every output token, or the shipped set the languages write (`output_vocab.py`)
STAGES = ("sft", "seqpo")  # shipped adapters per pair: warm-up SFT, and SeqPO trained from it (if it won)


def is_bundled(model: str | None) -> bool:
    """`--model` names the default bundled base, Gemma-3-270M: the base the shipped adapters were
    trained on, and prompted without a chat template (`bundled_base` knows every bundled base)."""
    base = bundled_base(model)
    return base is not None and base.name == DEFAULT_BASE


def shipped_adapter_dir(pair: str, stage: str | None = None) -> Path:
    """Where an adapter trained for `pair` ships inside the package: the SFT adapter in
    src/seqpo/models/<pair>, a SeqPO adapter in src/seqpo/models/<pair>-seqpo. Without a stage, the
    pair's default: the SeqPO adapter where one ships (only one that beat its SFT start on dev
    does), else the SFT adapter."""
    root = Path(__file__).parent / "models"
    name = str(pair).strip().lower()
    if stage is None:
        stage = "seqpo" if (root / f"{name}-seqpo" / "adapter_config.json").exists() else "sft"
    if stage not in STAGES:
        raise ValueError(f"unknown adapter stage {stage!r} (choose from {', '.join(STAGES)})")
    return root / (name if stage == "sft" else f"{name}-{stage}")


def resolve_adapter(adapter: str | None, pair: str, model: str | None) -> str | None:
    """The adapter to load: an explicit path; 'none' for the bare model; 'sft' or 'seqpo' for the
    adapter of that stage shipped for the pair; by default the pair's default shipped adapter, but
    only on the bundled model it was trained on."""
    if adapter is not None and str(adapter).strip().lower() in ("none", ""):
        return None
    if adapter and str(adapter).strip().lower() in STAGES and not Path(adapter).exists():
        shipped = shipped_adapter_dir(pair, str(adapter).strip().lower())
        if not (shipped / "adapter_config.json").exists():
            raise ModelLoadError(f"no {adapter} adapter ships for {pair} (shipped: "
                                 f"{', '.join(s for s in STAGES if (shipped_adapter_dir(pair, s) / 'adapter_config.json').exists()) or 'none'})")
        return str(shipped)
    if adapter:
        return str(adapter)
    if not is_bundled(model):
        return None
    shipped = shipped_adapter_dir(pair)
    return str(shipped) if (shipped / "adapter_config.json").exists() else None
