"""`seqpo data partial`: build partial-translation examples for a corpus, resumably."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..files import load_parallel
from ..generation import Generator
from ..model import load_model
from ..resume import check_run_settings
from .agreement import agreement_schedules
from .partial_settings import PartialDataSettings, settings_path
from .partial import append_examples, examples_from_schedule, finished_indices, summarize


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
