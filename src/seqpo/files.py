"""Reading the text files a run starts from: one sentence per line, UTF-8, sources aligned with references."""

from __future__ import annotations

from pathlib import Path

from .errors import InputFileError


def read_lines(path: str | Path, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} file not found: {p}")
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} file {p} is not UTF-8 text") from exc


def load_parallel(src: str | Path, ref: str | Path, limit: int | None = None) -> tuple[list[str], list[str]]:
    """Source and reference lines, checked to align, cut to the first `limit`."""
    sources = read_lines(src, "source")
    references = read_lines(ref, "reference")
    if len(sources) != len(references):
        raise InputFileError(f"{src} has {len(sources)} lines but {ref} has {len(references)}")
    if limit:
        sources, references = sources[:limit], references[:limit]
    return sources, references
