"""Schedule builders: local agreement (pure math + tiny model end to end) and the teacher LLM
(against a real local HTTP server speaking the OpenAI chat API, giving good and bad answers)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seqpo.cli import main
from seqpo.data.agreement import schedule_from_translations
from seqpo.data.teacher import parse_alignment, retry_delay, schedule_from_alignment
from seqpo.languages import parse_pair

EN_DE = parse_pair("en-de")
EN_ZH = parse_pair("en-zh")


def test_agreement_schedule_transfers_the_agreed_fraction():
    # full translation has 4 words; the prefix translations agree with it on 0, 1, 2, 4 words
    hyps = ["Es", "Das Haus", "Das Wetter", "Das Wetter ist schön"]
    schedule = schedule_from_translations(hyps, "Das Wetter ist heute schön .", EN_DE)
    # reference has 6 words: floor(a/4*6) with a = 0, 1, 2 -> 0, 1, 3, and all 6 at the end
    assert schedule == [0, 1, 3, 6]


def test_agreement_schedule_never_goes_back():
    schedule = schedule_from_translations(["Das Wetter", "Ein Haus", "Das Wetter ist"], "A B C", EN_DE)
    assert schedule == [2, 2, 3]


def test_parse_alignment_validates_concatenation():
    src, ref = "If it rains we stay", "Wenn es regnet, bleiben wir"
    good = json.dumps([["If", ""], ["it rains", "Wenn es regnet,"], ["we stay", "bleiben wir"]])
    assert parse_alignment(good, src, ref) == [("If", ""), ("it rains", "Wenn es regnet,"), ("we stay", "bleiben wir")]
    assert parse_alignment("```json\n" + good + "\n```", src, ref) is not None
    assert parse_alignment(json.dumps([["If it rains", "Wenn es regnet,"]]), src, ref) is None  # source lost
    assert parse_alignment(json.dumps([["If it rains we stay", "Wenn es regnet"]]), src, ref) is None
    assert parse_alignment("sure! here it is", src, ref) is None
    assert parse_alignment(json.dumps({"a": 1}), src, ref) is None


def test_schedule_from_alignment_by_reads():
    pairs = [("If", ""), ("it rains", "Wenn es regnet,"), ("we stay", "bleiben wir")]
    assert schedule_from_alignment(pairs, "If it rains we stay", EN_DE, 1) == [0, 0, 3, 3, 5]
    assert schedule_from_alignment(pairs, "If it rains we stay", EN_DE, 2) == [0, 3, 5]


class FakeTeacher(BaseHTTPRequestHandler):
    answers: list = []
    calls: list = []
    failures: list = []  # (status, headers) answered before any answer, one per request

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeTeacher.calls.append((self.path, body, self.headers.get("Authorization")))
        if FakeTeacher.failures:
            status, headers = FakeTeacher.failures.pop(0)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        content = FakeTeacher.answers.pop(0) if FakeTeacher.answers else "no"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def teacher_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTeacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeTeacher.calls.clear()
    FakeTeacher.failures.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_teacher_builder_retries_then_skips(teacher_url, tmp_path, monkeypatch, capsys):
    src = tmp_path / "s.en"
    ref = tmp_path / "r.zh"
    src.write_text("If it rains\nWe stay home\n", encoding="utf-8")
    ref.write_text("如果下雨\n我们待在家里\n", encoding="utf-8")
    FakeTeacher.answers = [
        "not json",  # sentence 0: invalid, then valid on the retry
        json.dumps([["If", ""], ["it rains", "如果下雨"]]),
        "[]", "[[\"We\", \"我们\"]]", "oops",  # sentence 1: three invalid answers -> skipped
    ]
    monkeypatch.setenv("MY_KEY", "secret")
    out = tmp_path / "pairs.jsonl"
    args = ["data", "partial", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", str(out),
            "--builder", "teacher", "--teacher-url", teacher_url, "--teacher-key-env", "MY_KEY", "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"examples": 3, "wait_fraction": 0.667, "mean_segment_units": 4.0, "skipped_sentences": 1}
    assert len(FakeTeacher.calls) == 5
    path, body, auth = FakeTeacher.calls[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["messages"][-1]["role"] == "user"
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["segment"] for r in rows if not r.get("skipped")] == ["", "", "如果下雨"]
    # resume: nothing left to ask
    assert main(args) == 0 and len(FakeTeacher.calls) == 5


def _teacher_args(teacher_url, tmp_path, sources, references):
    src, ref = tmp_path / "s.en", tmp_path / "r.zh"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    ref.write_text("\n".join(references) + "\n", encoding="utf-8")
    return ["data", "partial", "--pair", "en-zh", "--src", str(src), "--ref", str(ref),
            "--out", str(tmp_path / "pairs.jsonl"), "--builder", "teacher", "--teacher-url", teacher_url, "--quiet"]


def test_retry_delay_backs_off_and_honours_retry_after():
    assert [retry_delay(a, None, 1.0) for a in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(0, "3", 1.0) == 3.0 and retry_delay(5, "0", 1.0) == 0.0
    assert retry_delay(10, None, 1.0) == 60.0 and retry_delay(0, "3600", 1.0) == 60.0  # capped
    assert retry_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT", 1.0) == 0.0  # a date in the past: now
    assert retry_delay(1, "soon", 0.5) == 1.0  # unparseable: our own backoff


def test_teacher_rate_limits_are_retried_with_backoff(teacher_url, tmp_path, monkeypatch, capsys):
    """429 (Retry-After: 3), then 429 without Retry-After, then the answer: the sentence is built,
    not skipped, after waiting what the server asked and then the backoff."""
    import time

    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    FakeTeacher.failures = [(429, {"Retry-After": "3"}), (429, {})]
    FakeTeacher.answers = [json.dumps([["If", ""], ["it rains", "如果下雨"]])]
    assert main(_teacher_args(teacher_url, tmp_path, ["If it rains"], ["如果下雨"])) == 0
    assert json.loads(capsys.readouterr().out)["skipped_sentences"] == 0
    assert len(FakeTeacher.calls) == 3 and sleeps == [3.0, 2.0]


def test_teacher_that_stays_down_stops_the_run_with_one_line(teacher_url, tmp_path, monkeypatch, capsys):
    import time

    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    FakeTeacher.failures = [(503, {})] * 5
    assert main(_teacher_args(teacher_url, tmp_path, ["If it rains"], ["如果下雨"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "answered 503 Service Unavailable after 5 attempts" in err
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert (tmp_path / "pairs.jsonl").read_text() == ""  # nothing marked skipped: a re-run asks again


KILL_MID_SENTENCE = """
import json, os, signal, sys
from dataclasses import asdict
import seqpo.data.build as build
written = []
def write_then_die(fh, examples):
    lines = "".join(json.dumps(asdict(e), ensure_ascii=False) + "\\n" for e in examples)
    written.append(1)
    if len(written) == 2:  # the second sentence: two whole lines and half the third, then kill -9
        cut = [i for i, c in enumerate(lines) if c == "\\n"][1] + 5
        fh.write(lines[:cut]); fh.flush(); os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    fh.write(lines); fh.flush()
build.append_examples = write_then_die
from seqpo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_sentence_killed_mid_write_is_written_once_after_resume(teacher_url, tmp_path, capsys):
    import subprocess
    import sys

    from seqpo.sft import read_pairs
    from seqpo.sft_slots import group_episodes

    sources, references = ["If it rains", "We stay home", "It is cold"], ["如果下雨", "我们待在家里", "天气很冷"]
    answers = [[["If", ""], ["it rains", "如果下雨"]], [["We", "我们"], ["stay home", "待在家里"]],
               [["It is", ""], ["cold", "天气很冷"]]]
    FakeTeacher.answers = [json.dumps(a, ensure_ascii=False) for a in (answers[0], answers[1], answers[1], answers[2])]
    args = _teacher_args(teacher_url, tmp_path, sources, references)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_SENTENCE, *args], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    out = tmp_path / "pairs.jsonl"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 6  # sentence 0 whole, 1 half written
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 9
    rows = read_pairs(out)
    assert [(r["index"], r["step"]) for r in rows] == [(i, s) for i in range(3) for s in (1, 2, 3)]
    episodes = group_episodes(rows)  # what `seqpo sft --format slots` reads: whole episodes only
    assert ["".join(r["segment"] for r in ep) for ep in episodes] == references
    assert len(FakeTeacher.calls) == 4  # sentence 1 asked again, sentence 0 not


@pytest.mark.parametrize("flag,value,message", [("--chunk", "0", "--chunk must be at least 1, got 0"),
                                                ("--retries", "-1", "--retries must be at least 0"),
                                                ("--batch-size", "0", "--batch-size must be at least 1"),
                                                ("--limit", "0", "--limit must be at least 1")])
def test_partial_numeric_flags_are_checked_before_anything_is_written(teacher_url, tmp_path, capsys, flag, value,
                                                                      message):
    args = _teacher_args(teacher_url, tmp_path, ["If it rains"], ["如果下雨"])
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zh", "s.en"] and not FakeTeacher.calls


def test_agreement_builder_end_to_end_tiny_model(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "s.en"
    ref = tmp_path / "r.de"
    src.write_text("The weather is nice today.\n\nI like tea.\n", encoding="utf-8")
    ref.write_text("Das Wetter ist heute  schön.\nleer\nIch mag Tee.\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "partial", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--out", str(out),
                 "--model", str(tiny_model_dir), "--quiet"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    by_sentence = {}
    for r in rows:
        by_sentence.setdefault(r["index"], []).append(r)
    assert sorted(by_sentence) == [0, 2]  # the empty line has no examples
    assert "".join(r["segment"] for r in by_sentence[0]) == "Das Wetter ist heute  schön."
    assert [r["step"] for r in by_sentence[0]] == [1, 2, 3, 4, 5] and by_sentence[0][-1]["final"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["examples"] == 8


def test_local_teacher_model_invalid_answers_are_skipped(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "s.en"
    ref = tmp_path / "r.de"
    src.write_text("Hello there\n", encoding="utf-8")
    ref.write_text("Hallo du\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "partial", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--out", str(out),
                 "--builder", "teacher", "--teacher-model", str(tiny_model_dir), "--retries", "0", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped_sentences"] == 1 and summary["examples"] == 0  # a random model never aligns


def test_teacher_builder_needs_a_teacher(tmp_path, capsys):
    assert main(["data", "partial", "--src", "a", "--ref", "b", "--out", str(tmp_path / "o"),
                 "--builder", "teacher"]) == 2
    assert "needs --teacher-url or --teacher-model" in capsys.readouterr().err


def test_partial_refuses_to_mix_settings_and_sft_checks_the_pair(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "s.en"
    ref = tmp_path / "r.de"
    src.write_text("I like tea.\n", encoding="utf-8")
    ref.write_text("Ich mag Tee.\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    args = ["data", "partial", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--out", str(out),
            "--model", str(tiny_model_dir), "--quiet"]
    assert main(args) == 0
    assert json.loads((tmp_path / "pairs.settings.json").read_text())["chunk"] == 1
    assert main(args + ["--chunk", "2"]) == 2
    assert "other settings (chunk)" in capsys.readouterr().err
    assert main(["sft", "--pairs", str(out), "--pair", "en-zh", "--out", str(tmp_path / "a")]) == 2
    assert "holds en-de examples, not en-zh" in capsys.readouterr().err
