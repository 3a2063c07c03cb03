"""Long-form text on the tiny model: one unsegmented stream, sentences cut by the system, one output
stream with delays from the stream start, StreamLAAL scores, resume."""

import json

import pytest

from seqpo.cli import main
from seqpo.long_form import run_long_form, stream_clock, stream_record
from seqpo.stream import Episode, Step

from omnisteval_cli import omnisteval_cli


def test_stream_record_offsets_delays_and_time_by_sentence():
    first = Episode("A b.", "word", "word", [Step(1, "", 5.0), Step(2, "x y", 10.0, finished=True)])
    second = Episode("C d e.", "word", "word", [Step(2, "z", 1.0), Step(3, "w", 2.0, finished=True)])
    record = stream_record(7, [0, 2], [first, second], "word")
    assert record["prediction"] == "x y z w"
    assert record["delays"] == [2, 2, 2 + 2, 2 + 3]
    assert record["elapsed"] == [15.0, 15.0, 16.0, 18.0]  # the second sentence's time after the first's
    assert [s["source_offset"] for s in record["sentences"]] == [0, 2]
    assert [s["target_offset"] for s in record["sentences"]] == [0, 2]
    assert record["source_length"] == 5 and record["wait_fraction"] == 0.25
    assert record["steps"] == [[1, 5.0, 0], [2, 10.0, 2], [4, 1.0, 1], [5, 2.0, 1]]


def test_a_retranslated_stream_dates_each_final_unit_by_the_update_that_last_rewrote_it():
    """Re-translation writes nothing by `written`: its steps show whole translations. Each step counts
    the final units it dated, so the clock gives one computation-aware delay per output unit."""
    shown = [Step(1, "", 5.0, display="a"), Step(2, "", 10.0, display="a b"),
             Step(3, "", 20.0, display="a c d", finished=True)]
    record = stream_record(0, [0], [Episode("X y z.", "word", "word", shown)], "word")
    assert record["prediction"] == "a c d" and record["delays"] == [1, 3, 3]
    assert [written for _, _, written in record["steps"]] == [1, 0, 2]
    assert record["wait_fraction"] == 0.0  # every update changed what was shown
    assert len(stream_clock(record["steps"], 100.0)) == len(record["delays"])


def test_stream_clock_waits_for_speech_and_for_the_model():
    steps = [[1, 50.0, 0], [2, 300.0, 2], [4, 10.0, 1], [5, 10.0, 1]]
    # unit 1 spoken at 100 ms; step 2 starts at 200, ends 500 (= 5 units); step 3 at 400 -> busy
    # until 500, ends 510; step 4 starts when unit 5 is spoken (500)... but the model is free at 510
    assert stream_clock(steps, 100.0) == [5.0, 5.0, 5.1, 5.2]
    # a fast model never falls behind: each write comes just after its read is spoken
    assert stream_clock([[1, 1.0, 1], [50, 1.0, 1]], 100.0) == [1.01, 50.01]


def test_char_targets_join_without_spaces():
    first = Episode("A.", "word", "char", [Step(1, "你好", 1.0, finished=True)])
    second = Episode("B.", "word", "char", [Step(1, "再见", 1.0, finished=True)])
    record = stream_record(0, [0, 1], [first, second], "char")
    assert record["prediction"] == "你好再见" and record["delays"] == [1, 1, 2, 2]


@pytest.fixture
def long_form_file(en_zh_files, tmp_path):
    src, ref = en_zh_files
    path = tmp_path / "long.jsonl"
    assert main(["data", "long-form", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", str(path),
                 "--lines", "2"]) == 0
    return path


def long_eval(model, long_form, out, *extra):
    return ["eval", "--pair", "en-zh", "--long-form", str(long_form), "--model", str(model), "--out", str(out),
            "--quiet", "--policy", "wait-k", "--k", "2", *extra]


def test_eval_long_form_writes_streams_and_scores(tiny_model_dir, long_form_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(long_eval(tiny_model_dir, long_form_file, out)) == 0
    records = sorted((json.loads(x) for x in (out / "streams.jsonl").read_text().splitlines()),
                     key=lambda r: r["index"])  # written as they finish
    assert [r["index"] for r in records] == [0, 1, 2]  # lines 0-1, 3 (2 is empty), 4
    first = records[0]
    # the system found the two sentences of the first stream at the full stops
    assert [(s["source_offset"], s["source"]) for s in first["sentences"]] == [
        (0, "The weather is nice today."), (5, "I would like a cup of tea, please.")]
    assert first["source_length"] == 13
    assert len(first["delays"]) == len(first["elapsed"]) == len(first["prediction"].replace(" ", ""))
    assert first["delays"] == sorted(first["delays"]) and max(first["delays"]) <= 13
    second_start = first["sentences"][1]["target_offset"]
    assert all(d > 5 for d in first["delays"][second_start:])  # delays of the second sentence count its offset
    scores = json.loads((out / "scores.json").read_text())
    assert scores["streams"] == 3 and scores["sentences"] == 4 and scores["system_sentences"] == 4
    for key in ("StreamLAAL", "StreamLAAL_CA", "BLEU", "chrF"):
        assert isinstance(scores[key], (int, float)), key
    assert scores["StreamLAAL_CA"] >= scores["StreamLAAL"]
    sig = scores["signature"]
    assert sig["StreamLAAL"].startswith("StreamLAAL|seg:mwer") and sig["k"] == 2 and "BLEU" in sig["sacrebleu"]
    assert sig["segmentation"].endswith("100 source units")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["BLEU"] == scores["BLEU"]
    assert_long_yaal_is_what_omnisteval_prints(scores, out)


def test_eval_long_form_scores_a_retranslating_policy(tiny_model_dir, long_form_file, tmp_path):
    out = tmp_path / "retranslate"
    args = long_eval(tiny_model_dir, long_form_file, out)
    args[args.index("wait-k")] = "retranslate"
    assert main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["StreamLAAL_CA"] >= scores["StreamLAAL"]
    for record in map(json.loads, (out / "streams.jsonl").read_text().splitlines()):
        assert sum(written for _, _, written in record["steps"]) == len(record["delays"]) == len(record["elapsed"])


def assert_long_yaal_is_what_omnisteval_prints(scores: dict, out) -> None:
    """OUT/omnisteval holds the log `omnisteval longform` reads; run by hand, it prints the LongYAAL
    and LongYAAL_CA of scores.json (the zh target is scored by characters, not Moses-tokenized)."""
    command = scores["signature"]["omnisteval"]
    assert command.startswith(f"omnisteval longform --speech_segmentation {out}/omnisteval/segmentation.json")
    assert "--char_level" in command and "--lang" not in command
    assert scores["signature"]["LongYAAL"].startswith("LongYAAL|omnisteval:0.1.10|seg:softsegmenter|unit:char")
    assert 1 <= scores["yaal_scored_sentences"] <= scores["sentences"]
    theirs = omnisteval_cli(command)
    assert scores["LongYAAL"] == pytest.approx(theirs["LongYAAL (CU)"], abs=1e-3)
    assert scores["LongYAAL_CA"] == pytest.approx(theirs["LongYAAL (CA)"], abs=1e-3)


def test_eval_long_form_resumes_after_a_kill(tiny_model_dir, long_form_file, tmp_path):
    out = tmp_path / "run"
    assert main(long_eval(tiny_model_dir, long_form_file, out, "--limit", "2")) == 0
    path = out / "streams.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # a kill in the middle of the last line
    assert main(long_eval(tiny_model_dir, long_form_file, out)) == 0
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert records[0] == json.loads(lines[0])  # finished work was kept, not redone
    assert json.loads((out / "scores.json").read_text())["streams"] == 3
    # other settings in the same folder are refused
    assert main(long_eval(tiny_model_dir, long_form_file, out, "--max-sentence-units", "4")) == 2


@pytest.mark.parametrize("decoding", ["reencode", "append"])
def test_a_one_sentence_stream_matches_ordinary_eval(decoding, tiny_model_dir, en_zh_files, long_form_file, tmp_path):
    src, ref = en_zh_files
    plain = tmp_path / "plain"
    assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(tiny_model_dir),
                 "--out", str(plain), "--quiet", "--policy", "wait-k", "--k", "2", "--decoding", decoding]) == 0
    eval_records = {json.loads(x)["index"]: json.loads(x) for x in (plain / "instances.jsonl").read_text().splitlines()}
    long = tmp_path / "long"
    assert main(long_eval(tiny_model_dir, long_form_file, long, "--decoding", decoding)) == 0
    streams = sorted((json.loads(x) for x in (long / "streams.jsonl").read_text().splitlines()),
                     key=lambda r: r["index"])
    for stream, line in ((streams[1], 3), (streams[2], 4)):  # one sentence each
        assert len(stream["sentences"]) == 1
        assert stream["prediction"] == eval_records[line]["prediction"]
        assert stream["delays"] == eval_records[line]["delays"]


def test_max_units_closes_a_sentence_without_an_end(tiny_loaded):
    from seqpo.generation import Generator
    from seqpo.languages import parse_pair
    from seqpo.policies.wait_k import WaitKPolicy

    pair = parse_pair("en-de")
    words = " ".join(f"w{i}" for i in range(9))
    generator = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    [record] = run_long_form([(0, words)], WaitKPolicy(k=2), generator, pair, chunk=1, max_units=4)
    assert [(s["source_offset"], s["source_length"]) for s in record["sentences"]] == [(0, 4), (4, 4), (8, 1)]
    assert record["source_length"] == 9
    for s in record["sentences"]:  # each sentence's delays lie within its own stretch of the stream
        n = len(s["prediction"].split())
        delays = record["delays"][s["target_offset"] : s["target_offset"] + n]
        assert all(s["source_offset"] < d <= s["source_offset"] + s["source_length"] for d in delays)


def test_translate_long_form_prints_sentence_by_sentence(tiny_model_dir, capsys):
    code = main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--json", "--policy", "wait-k",
                 "--k", "2", "--long-form", "The weather is nice\ntoday. I like tea. And"])
    assert code == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e["source"] for e in events if e["type"] == "done"]
    assert done == ["The weather is nice today.", "I like tea.", "And"]


def test_eval_long_form_speech_scores_in_ms_of_the_joined_audio(tiny_model_dir, en_zh_files, tmp_path, capsys):
    """Spoken long-form: each stream is its lines' espeak-ng audio joined, heard by the streaming
    cascade in one piece; reference sentences are placed by their audio, latency is in ms."""
    from seqpo.data.long_form import read_long_form
    from seqpo.languages import parse_pair
    from seqpo.speech.audio import read_audio
    from seqpo.speech.long_form import spoken_streams

    src, ref = en_zh_files
    lines = [(s, r) for s, r in zip(src.read_text().splitlines(), ref.read_text().splitlines()) if s.strip()]
    (tmp_path / "dev.en").write_text("".join(s + "\n" for s, _ in lines))
    (tmp_path / "dev.zh").write_text("".join(r + "\n" for _, r in lines))
    dev = ["--pair", "en-zh", "--src", str(tmp_path / "dev.en"), "--ref", str(tmp_path / "dev.zh")]
    audio, long_form = tmp_path / "audio", tmp_path / "long.jsonl"
    assert main(["data", "speech", *dev, "--out", str(audio)]) == 0
    assert main(["data", "long-form", *dev, "--out", str(long_form), "--lines", "2"]) == 0

    streams = read_long_form(long_form)
    spoken = spoken_streams(audio, streams, parse_pair("en-zh"))
    lengths = [len(read_audio(audio / f"{i:04d}.wav")) / 16.0 for i in range(4)]
    assert [s.source_offset for s in spoken[1].sentences] == [0.0, pytest.approx(lengths[2])]
    assert [s.source_length for s in spoken[1].sentences] == [pytest.approx(x) for x in lengths[2:]]
    assert spoken[1].ms == pytest.approx(sum(lengths[2:]))

    out = tmp_path / "run"

    def speech_eval(folder, run, *extra):
        return ["eval", "--pair", "en-zh", "--long-form", str(long_form), "--audio-dir", str(folder), "--model",
                str(tiny_model_dir), "--policy", "wait-k", "--k", "2", "--out", str(run), "--quiet", *extra]

    args = speech_eval(audio, out)
    assert main([*args, "--limit", "1"]) == 0
    first = (out / "streams.jsonl").read_text()
    assert main(args) == 0
    text = (out / "streams.jsonl").read_text()
    assert text.startswith(first) and len(text.splitlines()) == 2  # resumed, the first stream kept
    for line in text.splitlines():
        record = json.loads(line)
        total = spoken[record["index"]].ms
        assert record["source_length"] == pytest.approx(total, abs=0.1)
        assert len(record["delays"]) == len(record["elapsed"]) == len(record["prediction"].replace(" ", ""))
        assert record["delays"] == sorted(record["delays"]) and 0 < record["delays"][0] and record["delays"][-1] <= total
        spans = [s["audio_span"] for s in record["sentences"]]
        assert spans == sorted(spans) and spans[-1][1] <= total + 1
        assert record["transcript"] == " ".join(s["source"] for s in record["sentences"])
    scores = json.loads((out / "scores.json").read_text())
    assert scores["streams"] == 2 and scores["sentences"] == 4
    assert scores["signature"]["latency_unit"]["source"] == "ms of audio" and 0 <= scores["WER"] <= 60
    assert scores["signature"]["batch_size"] == 1  # one sentence at a time, as the cascade runs
    assert isinstance(scores["StreamLAAL"], float) and scores["StreamLAAL_CA"] >= scores["StreamLAAL"]
    assert scores["asr_seconds_per_stream"] > 0
    assert_long_yaal_is_what_omnisteval_prints(scores, out)

    # audio made from other sentences is refused before any model loads, in one line
    (tmp_path / "other.en").write_text("".join(s + " Again.\n" for s, _ in lines))
    other = tmp_path / "other"
    assert main(["data", "speech", "--pair", "en-zh", "--src", str(tmp_path / "other.en"), "--ref",
                 str(tmp_path / "dev.zh"), "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(speech_eval(other, tmp_path / "run2")) == 2
    err = capsys.readouterr().err.strip()
    assert "not the same source file" in err and len(err.splitlines()) == 1
    assert main(speech_eval(audio, tmp_path / "run3", "--decoding", "slots")) == 2
    assert "does not support --decoding slots" in capsys.readouterr().err
    sentences = ["eval", "--pair", "en-zh", "--audio-dir", str(audio), "--model", str(tiny_model_dir),
                 "--out", str(tmp_path / "run4"), "--quiet", "--decoding", "slots"]
    assert main(sentences) == 2  # sentence by sentence too, before any audio is read
    assert "does not support --decoding slots" in capsys.readouterr().err
