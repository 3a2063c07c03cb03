"""`seqpo data long-form`: streams of consecutive lines with their sentences' source offsets; resumable."""

from __future__ import annotations

import json

import pytest

from seqpo.cli import main
from seqpo.data.long_form import long_form_streams, read_long_form
from seqpo.metrics.stream_latency import StreamSentence, stream_laal


def test_word_source_streams_and_offsets():
    src = ["Hello world .", "", "How are you ?", "Fine .", "Bye"]
    ref = ["你好世界。", "空", "你好吗？", "很好。", "再见"]
    streams = long_form_streams(src, ref, 3, "word")
    assert [s.source for s in streams] == ["Hello world . How are you ?", "Fine . Bye"]
    first = streams[0]
    assert first.references == ["你好世界。", "你好吗？"] and first.lines == [0, 2]  # line 1 has no source
    assert first.source_offsets == [0, 3] and first.source_lengths == [3, 4]
    assert streams[1].index == 1 and streams[1].source_offsets == [0, 2] and streams[1].lines == [3, 4]
    assert first.sentences() == [StreamSentence("你好世界。", 0, 3), StreamSentence("你好吗？", 3, 4)]


def test_char_source_joins_without_spaces():
    streams = long_form_streams(["今天 很好。", "我们走吧。"], ["Fine today.", "Let's go."], 20, "char")
    assert streams[0].source == "今天 很好。我们走吧。"
    assert streams[0].source_offsets == [0, 5] and streams[0].source_lengths == [5, 5]


def test_stream_scores_against_its_sentences():
    stream = long_form_streams(["a b c", "d e"], ["A B C", "D E"], 20, "word")[0]
    # A system that writes each word as soon as its source word is read: LAAL 1 in both sentences.
    r = stream_laal("A B C D E", [1, 2, 3, 4, 5], stream.sentences(), "word")
    assert r.laal == [1.0, 1.0]


def test_cli_builds_resumes_and_refuses_other_settings(tmp_path, capsys):
    src, ref, out = tmp_path / "test.en", tmp_path / "test.de", tmp_path / "long.jsonl"
    src.write_text("".join(f"source {i} .\n" for i in range(7)), encoding="utf-8")
    ref.write_text("".join(f"Quelle {i} .\n" for i in range(7)), encoding="utf-8")
    args = ["data", "long-form", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--out", str(out),
            "--lines", "3"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"out": str(out), "streams": 3, "written": 3, "sentences": 7, "skipped_lines": 0}
    full = out.read_bytes()
    streams = read_long_form(out)
    assert [s.lines for s in streams] == [[0, 1, 2], [3, 4, 5], [6]]
    assert streams[0].source == "source 0 . source 1 . source 2 ." and streams[0].source_offsets == [0, 3, 6]

    out.write_bytes(full[: full.index(b"\n") + 20])  # killed while writing the second stream
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 2
    assert out.read_bytes() == full
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["written"] == 0
    assert out.read_bytes() == full  # idempotent

    assert main([*args[:-1], "5"]) == 2
    assert "other settings (lines)" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--lines", "0"), ("--limit", "0")])
def test_cli_rejects_bad_counts(tmp_path, capsys, flag, value):
    (tmp_path / "s").write_text("a\n")
    (tmp_path / "r").write_text("b\n")
    assert main(["data", "long-form", "--pair", "en-de", "--src", str(tmp_path / "s"), "--ref", str(tmp_path / "r"),
                 "--out", str(tmp_path / "o.jsonl"), flag, value]) == 2
    assert f"{flag} must be at least 1" in capsys.readouterr().err
