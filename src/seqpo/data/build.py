"""`seqpo data partial`: build partial-translation examples for a corpus, resumably."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..bundled import MODEL_HELP
from ..config import DeviceSettings, check_at_least, setting
from ..errors import InputFileError
from ..files import load_parallel
from ..generation import Generator
from ..model import load_model
from ..prompts import check_supported
from ..resume import check_run_settings
from ..languages import LanguagePair, parse_pair
from .agreement import agreement_schedules
from .partial import append_examples, examples_from_schedule, finished_indices, summarize


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


def build_partial(settings: PartialDataSettings, loaded=None, progress: bool = True) -> dict:
    from .teacher import HTTPTeacher, LocalTeacher, teacher_schedule  # start-up cost: httpx takes ~0.7 s

    pair = settings.validate()
    sources, refs = load_parallel(settings.src, settings.ref, settings.limit)
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_run_settings(settings_path(out), {
        "pair": str(pair), "chunk": settings.chunk, "builder": settings.builder,
        "src": str(settings.src), "ref": str(settings.ref),
        **({"model": settings.model, "adapter": settings.adapter} if settings.builder == "agreement" else
           {"teacher": settings.teacher_url or settings.teacher_model, "teacher_name": settings.teacher_name}),
    }, out)
    done = finished_indices(out)
    todo = [i for i in range(len(sources)) if i not in done and sources[i].strip() and refs[i].strip()]

    teacher = None
    if todo and settings.builder == "teacher":
        if settings.teacher_url:
            teacher = HTTPTeacher(settings.teacher_url, settings.teacher_name, settings.teacher_key_env)
        else:
            lm = load_model(settings.teacher_model, None, settings.dtype, settings.device)
            teacher = LocalTeacher(Generator(lm.model, lm.tokenizer, batch_size=1), lm.tokenizer)
    elif todo and loaded is None:
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template)
    generator = Generator(loaded.model, loaded.tokenizer, batch_size=settings.batch_size,
                          chat=loaded.chat) if loaded else None

    bar = tqdm(total=len(todo), unit="sent", disable=not progress, desc=f"{pair} {settings.builder}")
    with out.open("a", encoding="utf-8") as fh:
        step = settings.batch_size if settings.builder == "agreement" else 1
        for s in range(0, len(todo), step):
            batch = todo[s : s + step]
            if settings.builder == "agreement":
                schedules = agreement_schedules([(sources[i], refs[i]) for i in batch], pair, settings.chunk, generator)
            else:
                schedules = [teacher_schedule(teacher, sources[i], refs[i], pair, settings.chunk, settings.retries)
                             for i in batch]
            for i, schedule in zip(batch, schedules):
                if schedule is None:
                    fh.write(json.dumps({"index": i, "skipped": True}) + "\n")
                    fh.flush()
                else:
                    append_examples(fh, examples_from_schedule(i, sources[i], refs[i], pair, settings.chunk, schedule))
            bar.update(len(batch))
    bar.close()
    return summarize(out, pair)
