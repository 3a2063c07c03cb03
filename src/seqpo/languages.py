"""Language pairs: names used in prompts, and the unit in which each language is counted.

Latency in SiMT is counted in source and target *units*: words for space-delimited languages,
characters for Chinese and Japanese (as SimulEval's `--eval-latency-unit char`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownPairError

LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "ja": "Japanese",
    "fr": "French",
    "es": "Spanish",
    "ru": "Russian",
    "cs": "Czech",
    "it": "Italian",
    "pt": "Portuguese",
    "ko": "Korean",
    "uk": "Ukrainian",
}

CHARACTER_LANGUAGES = frozenset({"zh", "ja"})


def unit_of(lang: str) -> str:
    """`char` for languages written without spaces between words, else `word`."""
    return "char" if lang in CHARACTER_LANGUAGES else "word"


@dataclass(frozen=True)
class LanguagePair:
    source: str
    target: str

    @property
    def source_name(self) -> str:
        return LANGUAGE_NAMES[self.source]

    @property
    def target_name(self) -> str:
        return LANGUAGE_NAMES[self.target]

    @property
    def source_unit(self) -> str:
        return unit_of(self.source)

    @property
    def target_unit(self) -> str:
        return unit_of(self.target)

    def __str__(self) -> str:
        return f"{self.source}-{self.target}"


def parse_pair(text: str) -> LanguagePair:
    """Parse `en-zh` into a LanguagePair, rejecting unknown codes and same-language pairs."""
    parts = text.strip().lower().split("-")
    if len(parts) != 2 or not all(parts):
        raise UnknownPairError(f"language pair '{text}' must look like 'en-zh'")
    src, tgt = parts
    known = ", ".join(sorted(LANGUAGE_NAMES))
    for code in (src, tgt):
        if code not in LANGUAGE_NAMES:
            raise UnknownPairError(f"unknown language '{code}' in pair '{text}' (known: {known})")
    if src == tgt:
        raise UnknownPairError(f"language pair '{text}' translates a language into itself")
    return LanguagePair(src, tgt)
