"""`seqpo eval`: the one evaluator. It runs a policy over an eval input and writes the finished
records as they finish (`instances.jsonl` for sentences, `streams.jsonl` for long-form streams),
then `scores.json` (quality, latency, and a `signature` of every setting that changes a number).

The input's kind (`eval_source.EvalSource`: text or speech, sentences or streams) reads its inputs,
runs them and scores its records; everything else happens here, once for every kind: validation,
the chat template as resolved, the run settings and the refusal to mix them in one folder, resume
(a re-run with the same output folder keeps the finished records; a line cut short by a kill is
dropped and its item redone), the model and engine, the progress bar, fsync'd appends and the
signature.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

from tqdm import tqdm

from .engine import engine_class, make_engine
from .eval_sentences import TextSentences
from .eval_settings import EvalSettings
from .eval_source import EvalRun, EvalSource
from .instances import LEGACY_DEFAULTS, signature
from .languages import LanguagePair
from .long_form import TextStreams
from .model import load_model, uses_chat_template
from .resume import check_run_settings, read_complete_jsonl
from .speech.evaluate import SpokenSentences
from .speech.long_form import SpokenStreams


def eval_source(settings: EvalSettings, pair: LanguagePair) -> EvalSource:
    """The kind of input the settings name, its inputs read and checked."""
    if settings.long_form:
        return (SpokenStreams if settings.audio_dir else TextStreams)(settings, pair)
    return (SpokenSentences if settings.audio_dir else TextSentences)(settings, pair)


def read_finished(path: Path) -> dict[int, dict]:
    """Finished records by index; a trailing line cut off by a kill is truncated away."""
    return {record["index"]: record for record in read_complete_jsonl(path)}


def run_settings(source: EvalSource, settings: EvalSettings, pair: LanguagePair, policy_settings: dict) -> dict:
    """What settings.json records: what a resume must not change."""
    recorded = {"pair": str(pair), **policy_settings, "chunk": settings.chunk, "model": settings.model,
                "adapter": settings.adapter, **source.input_settings(), "decoding": settings.decoding,
                "quantize": settings.quantize, "vocab": settings.vocab,
                "slot": settings.slot if engine_class(settings.decoding).reserves_source else None,
                "chat_template": settings.chat_template}
    if source.speech:
        recorded.update(audio_dir=str(settings.audio_dir), **settings.asr_settings())
    return recorded


def score(source: EvalSource, records: list[dict], run: EvalRun, out: Path) -> dict:
    """scores.json of the finished records (but this invocation's wall time): the kind's scores and
    the signature; extra files (OmniSTEval's log) go in `out`."""
    scored = source.score(records, run, out)
    signed = signature(run.settings, run.pair, run.policy.settings(), {"signatures": scored.sacrebleu})
    signed.update(scored.signature)
    if source.speech:
        signed.update(latency_unit={"source": "ms of audio", "target": run.pair.target_unit}, unit_ms=None,
                      **run.settings.asr_signature())
    return {**scored.values, "signature": signed, **scored.asr}


def evaluate(settings: EvalSettings, loaded=None, progress: bool = True) -> dict:
    """Evaluate (or resume evaluating) a policy; returns the scores also written to scores.json."""
    pair = settings.validate()
    source = eval_source(settings, pair)  # every input read and checked before a model loads
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = settings.build_policy()
    # the chat template as resolved: a given model brings its own (older runs had none)
    chat = bool(loaded.chat) if loaded is not None else \
        uses_chat_template(settings.chat_template, settings.model, settings.decoding)
    settings = copy.copy(settings)  # not dataclasses.replace: __post_init__ would resolve --adapter again
    settings.chat_template = "on" if chat else "off"  # what the signature records
    if source.speech:
        settings.batch_size = 1  # the cascade decodes one sentence at a time, whatever --batch-size says
    check_run_settings(out / "settings.json", run_settings(source, settings, pair, policy.settings()), out,
                       legacy=LEGACY_DEFAULTS)

    path = out / source.log
    done = read_finished(path)
    todo = [key for key in source.keys if key not in done]
    if loaded is None and source.needs_model(todo):
        loaded = load_model(settings.model, settings.adapter, settings.dtype, settings.device, settings.chat_template,
                            settings.decoding, settings.quantize, settings.vocab)
    engine = None  # speech kinds: the cascade makes its own
    if loaded is not None and todo and not source.speech:
        engine = make_engine(loaded, settings.decoding, settings.slot, settings.batch_size,
                             few_shot=settings.use_few_shot(), lookahead=settings.lookahead,
                             write_ahead=settings.write_ahead)
    run = EvalRun(settings, pair, policy, loaded, engine)

    started = time.perf_counter()
    bar = tqdm(total=len(source.keys), initial=len(source.keys) - len(todo), unit=source.progress_unit,
               disable=not progress, desc=f"{pair} {settings.policy}{source.label}", dynamic_ncols=True)
    with path.open("a", encoding="utf-8") as fh:
        def write(key: int, record: dict) -> None:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done[key] = record
            bar.update(1)

        source.run(todo, run, write)
    bar.close()
    wall = time.perf_counter() - started
    scores = score(source, [done[key] for key in source.keys], run, out)
    # wall time of this invocation only (a resumed run times the items it ran)
    scores[f"wall_seconds_per_{source.unit}"] = round(wall / len(todo), 3) if todo else None
    (out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False))
    return scores


__all__ = ["EvalSettings", "eval_source", "evaluate", "read_finished", "run_settings", "score"]
