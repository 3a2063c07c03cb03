"""Language pairs: names used in prompts, and the unit in which each language is counted.

Latency in SiMT is counted in source and target *units*: words for space-delimited languages,
characters for Chinese and Japanese (as SimulEval's `--eval-latency-unit char`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownPairError

# Languages with few-shot examples in prompts.py; adding one means adding its examples there.
LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "ja": "Japanese",
}

# Target units per source unit, measured on the generaltest2022 references (never on a test set).
# Wait-k writes this many target units per source unit read, so it finishes near the source end.
UNIT_RATIO = {
    ("en", "zh"): 1.79,
    ("en", "de"): 0.98,
    ("en", "ja"): 2.64,
    ("zh", "en"): 0.66,
    ("de", "en"): 1.15,
    # No ja-en set here (sacrebleu has wmt22/23 ja-en): English words per Japanese character of the
    # en-ja generaltest2022 set, its two sides read the other way (en-zh read so gives 0.56, zh-en 0.66).
    ("ja", "en"): 0.38,
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

    @property
    def unit_ratio(self) -> float:
        """Target units per source unit (1.0 for pairs we have not measured)."""
        return UNIT_RATIO.get((self.source, self.target), 1.0)

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
