"""The settings of `seqpo data partial` and where a pairs file records them: torch-free, so
`seqpo --help` (and `seqpo data long-form`) load without the builders' model runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundled import MODEL_HELP
from ..config import DeviceSettings, check_at_least, setting
from ..errors import InputFileError
from ..languages import LanguagePair, parse_pair
from ..prompts import check_supported


@dataclass
class PartialDataSettings(DeviceSettings):
    pair: str = setting("en-zh", "language pair, source-target (en-zh, en-de, en-ja, zh-en, de-en, ja-en)")
    src: str = setting(None, "source file, one sentence per line")
    ref: str = setting(None, "reference file, aligned with --src line by line")
    out: str = setting(None, "output JSONL of examples (appended; re-running resumes)")
    chunk: int = setting(1, "source units per read (words; characters for zh/ja sources)")
    builder: str = setting("agreement", "how to decide what may be written after each read",
                           choices=["agreement", "teacher"])
    model: str = setting(None, f"agreement: causal LM translating the prefixes: {MODEL_HELP}")
    adapter: str = setting(None, "agreement: peft adapter on --model")
    teacher_url: str = setting(None, "teacher: OpenAI-compatible base URL, e.g. http://host:8000/v1")
    teacher_name: str = setting("default", "teacher: model name sent to the endpoint")
    teacher_key_env: str = setting("OPENAI_API_KEY", "teacher: environment variable holding the API key")
    teacher_model: str = setting(None, "teacher: local causal LM path instead of an endpoint")
    retries: int = setting(2, "teacher: retries of an invalid answer before the sentence is skipped")
    limit: int = setting(None, "use only the first N lines")
    batch_size: int = setting(8, "agreement: sentences translated together")


    def validate(self) -> LanguagePair:
        """Everything checked before a file is touched."""
        pair = check_supported(parse_pair(self.pair))
        for name in ("src", "ref", "out"):
            if not getattr(self, name):
                raise InputFileError(f"--{name} is required")
        check_at_least(self, 1, "chunk", "batch_size", "limit")
        check_at_least(self, 0, "retries")
        if self.builder == "teacher" and not (self.teacher_url or self.teacher_model):
            raise InputFileError("the teacher builder needs --teacher-url or --teacher-model")
        return pair


def settings_path(pairs: Path) -> Path:
    """The sidecar recording how a pairs file was built (pairs.jsonl -> pairs.settings.json)."""
    return pairs.with_name(pairs.stem + ".settings.json")
