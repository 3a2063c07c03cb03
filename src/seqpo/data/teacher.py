"""Schedule builder with a strong teacher LLM, as SeqPO-SiMT built its warm-up data (arXiv
2505.20622, sec. 3.2): the teacher splits source and reference into aligned chunks; after the
source words of chunk i are read, the reference text of chunks 1..i may be written.

The teacher is any OpenAI-compatible chat endpoint (`--teacher-url`, key from an environment
variable) or a local causal LM (`--teacher-model PATH`). Answers must be one JSON list of
[source_chunk, target_chunk] pairs whose chunks concatenate back to the source and the reference;
an invalid answer is retried, then the sentence is skipped and counted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from email.utils import parsedate_to_datetime

import httpx

from ..errors import SeqpoError
from ..languages import LanguagePair
from ..requests import Request
from ..stream import chunk_source, count_units, join_reads

log = logging.getLogger(__name__)


class TeacherError(SeqpoError):
    """The teacher endpoint could not be reached or refused the request."""


def teacher_messages(source: str, reference: str, pair: LanguagePair) -> list[dict]:
    src, tgt = pair.source_name, pair.target_name
    return [
        {"role": "system", "content": "You align translations for simultaneous interpreting."},
        {"role": "user", "content": (
            f"Split the {src} sentence and its {tgt} translation into aligned chunks, in order, so that "
            f"an interpreter could say each {tgt} chunk right after hearing its {src} chunk. A {tgt} "
            "chunk may be empty when the interpreter must wait. Copy the text exactly: the source "
            "chunks must concatenate to the sentence and the target chunks to the translation.\n"
            'Answer with one line of JSON only: [["source chunk", "target chunk"], ...]\n'
            f"{src}: {source}\n{tgt}: {reference}")},
    ]


def _squash(text: str) -> str:
    return "".join(text.split())


def parse_alignment(answer: str, source: str, reference: str) -> list[tuple[str, str]] | None:
    """The chunk pairs, or None when the answer is not valid JSON or does not concatenate back."""
    text = answer.strip()
    if text.startswith("```"):  # models like fencing JSON even when told not to
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list) or not data:
        return None
    pairs = []
    for item in data:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            return None
        pairs.append((item[0], item[1]))
    # whitespace between chunks is not meaningful; every other character must be there, in order
    if _squash("".join(s for s, _ in pairs)) != _squash(source):
        return None
    if _squash("".join(t for _, t in pairs)) != _squash(reference):
        return None
    return pairs


def schedule_from_alignment(pairs: list[tuple[str, str]], source: str, pair: LanguagePair, chunk: int) -> list[int]:
    """Reference units writable after each read of `chunk` units."""
    ends, s_total, t_total = [], 0, 0
    for s, t in pairs:
        s_total += count_units(s, pair.source_unit)
        t_total += count_units(t, pair.target_unit)
        ends.append((s_total, t_total))
    reads = chunk_source(source, pair.source_unit, chunk)
    schedule = []
    for t in range(1, len(reads) + 1):
        read = count_units(join_reads(reads[:t], pair.source_unit), pair.source_unit)
        schedule.append(max([g for s, g in ends if s <= read], default=0))
    return schedule


def retry_delay(attempt: int, retry_after: str | None, backoff: float, longest: float = 60.0) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After (seconds or an
    HTTP date) when it sends one, else exponential backoff; never more than `longest`."""
    if retry_after:
        try:
            return min(longest, max(0.0, float(retry_after)))
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
                return min(longest, max(0.0, when.timestamp() - time.time()))
            except (TypeError, ValueError):
                pass  # unparseable: fall back to our own backoff
    return min(longest, backoff * 2 ** attempt)


RETRIED_STATUS = {429, 500, 502, 503, 504}  # rate limits and overloaded or restarting servers


class HTTPTeacher:
    """An OpenAI-compatible `/chat/completions` endpoint. Rate limits (429), server errors (5xx)
    and dropped connections are retried `attempts` times in all, with exponential backoff from
    `backoff` seconds (or the server's Retry-After), before the run stops with a `TeacherError`
    (re-running resumes): an endpoint that is down must not mark every sentence skipped."""

    def __init__(self, url: str, model: str = "default", key_env: str = "OPENAI_API_KEY", timeout: float = 120,
                 attempts: int = 5, backoff: float = 1.0):
        headers = {}
        if os.environ.get(key_env):
            headers["Authorization"] = f"Bearer {os.environ[key_env]}"
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.client = httpx.Client(headers=headers, timeout=timeout)
        self.attempts, self.backoff = max(1, attempts), backoff

    def _post(self, messages: list[dict]):
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                r = self.client.post(self.url, json={"model": self.model, "messages": messages, "temperature": 0})
            except httpx.TransportError as exc:
                if last:
                    raise TeacherError(f"teacher endpoint {self.url}: {exc} ({self.attempts} attempts)") from exc
                time.sleep(retry_delay(attempt, None, self.backoff))
                continue
            if r.status_code not in RETRIED_STATUS or last:
                return r
            log.warning("teacher endpoint answered %d; retrying", r.status_code)
            time.sleep(retry_delay(attempt, r.headers.get("Retry-After"), self.backoff))

    def ask(self, messages: list[dict]) -> str:
        r = self._post(messages)
        try:
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]
        except httpx.HTTPError as exc:
            tries = f" after {self.attempts} attempts" if r.status_code in RETRIED_STATUS else ""
            raise TeacherError(f"teacher endpoint {self.url} answered {r.status_code} {r.reason_phrase}{tries}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise TeacherError(f"teacher endpoint {self.url} returned no chat completion") from exc


class LocalTeacher:
    """A local causal LM (its chat template when it has one), answering on one line."""

    def __init__(self, generator, tokenizer, max_new_tokens: int = 512):
        self.generator, self.tokenizer, self.max_new_tokens = generator, tokenizer, max_new_tokens

    def ask(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "\n".join(m["content"] for m in messages) + "\nAnswer: "
        req = Request(prefix="", prompt=prompt, max_new_tokens=self.max_new_tokens, stop_at_newline=False)
        return self.generator.complete([req])[0].text


def teacher_schedule(teacher, source: str, reference: str, pair: LanguagePair, chunk: int,
                     retries: int = 2) -> list[int] | None:
    """A schedule from the teacher's alignment; None after `retries`+1 invalid answers."""
    messages = teacher_messages(source, reference, pair)
    for _ in range(retries + 1):
        answer = teacher.ask(messages)
        pairs = parse_alignment(answer, source, reference)
        if pairs is not None:
            return schedule_from_alignment(pairs, source, pair, chunk)
        # a deterministic teacher asked the same question gives the same answer: say what was wrong
        messages = messages + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "That answer is invalid: it must be one JSON list of "
             "[source chunk, target chunk] pairs whose source chunks concatenate exactly to the "
             "sentence and whose target chunks concatenate exactly to the translation. Try again."},
        ]
    return None
