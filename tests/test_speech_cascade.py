"""Speech in, text out: `seqpo translate --audio`, `seqpo eval --audio-dir` and `seqpo data speech`
on real espeak-ng speech, the real Whisper tiny.en and the tiny random text model."""

import json

import pytest

from seqpo.cli import main
from seqpo.speech.audio import read_audio
from seqpo.speech.synth import synthesize, write_wav

from heard import (COMMA_CLAUSE, TALK, TALK_SENTENCES, SENTENCE_WER, TEA_TAIL, THANKS, assert_clip_heard, assert_heard,
                   assert_second_sentence, assert_tail_heard, trimmed)
from omnisteval_cli import omnisteval_cli

TWO_SENTENCES = "Thank you very much. I would like a cup of tea."


@pytest.fixture(scope="module")
def two_sentences_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    write_wav(path, synthesize(TWO_SENTENCES))
    return path


def test_translate_audio_json_events(tiny_model_dir, two_sentences_wav, capsys):
    code = main(["translate", "--audio", str(two_sentences_wav), "--pair", "en-de", "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--k", "2", "--json"])
    assert code == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e for e in events if e["type"] == "done"]
    assert events[-1]["type"] == "done" and len(done) >= 2  # the period after "much" ends a sentence (tiny.en may cut the rest again)
    assert_heard(done[0]["source"], THANKS, SENTENCE_WER, done)
    steps = [e for e in events if e["type"] in ("wait", "write")]
    audio = [e["audio_ms"] for e in steps]
    assert audio == sorted(audio) and audio[0] >= 1000.0
    first = events[: events.index(done[0])]
    assert [e["read"] for e in first] == list(range(1, len(first) + 1))  # one read per stable word
    assert " ".join(e["text"] for e in first if e["type"] == "write") == done[0]["prediction"]
    d = done[1]
    start, end = d["audio_span"]
    assert start == done[0]["audio_span"][1] and d["latency_unit"] == "ms"
    writes = [e for e in events[events.index(done[0]):events.index(done[1])] if e["type"] == "write"]
    assert d["StartOffset"] == pytest.approx(writes[0]["audio_ms"] - start, abs=0.1)
    assert d["EndOffset"] == pytest.approx(writes[-1]["audio_ms"] - end, abs=0.2)
    assert d["StartOffset_CA"] >= d["StartOffset"] and d["AL"] is not None


@pytest.fixture(scope="module")
def trimmed_wav(tmp_path_factory):
    """The two sentences with no silence after the last word."""
    path = tmp_path_factory.mktemp("speech") / "trimmed.wav"
    write_wav(path, trimmed(synthesize(TWO_SENTENCES)))
    return path


def test_translate_audio_hears_words_right_before_the_end(tiny_model_dir, trimmed_wav, capsys):
    """The words said last reach the last sentence's source (the cascade's finish, shared by
    translate --audio, eval --audio-dir, eval --long-form, the server and the SimulEval agent)."""
    assert main(["translate", "--audio", str(trimmed_wav), "--pair", "en-de", "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--json"]) == 0
    done = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"done"' in x]
    heard = " ".join(d["source"] for d in done)
    assert_clip_heard(heard, done)
    assert_tail_heard(heard, TEA_TAIL, done)


def test_eval_audio_dir_hears_words_right_before_the_end(tiny_model_dir, trimmed_wav, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "0000.wav").write_bytes(trimmed_wav.read_bytes())
    (folder / "source.en").write_text(TWO_SENTENCES + "\n")
    (folder / "reference.de").write_text("Vielen Dank. Ich hätte gern eine Tasse Tee.\n")
    assert main(["eval", "--pair", "en-de", "--audio-dir", str(folder), "--model", str(tiny_model_dir),
                 "--policy", "wait-k", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    record = json.loads((tmp_path / "run" / "instances.jsonl").read_text())
    assert_tail_heard(" ".join(w["text"] for w in record["asr_words"]), TEA_TAIL, record)  # what was heard


@pytest.mark.parametrize("text, sentences", [(TWO_SENTENCES, 2), (COMMA_CLAUSE, 1), (TALK, TALK_SENTENCES)])
def test_translate_audio_cuts_only_where_the_speaker_ended_a_sentence(tiny_model_dir, tmp_path, capsys,
                                                                      text, sentences):
    """Two sentences are two episodes; a sentence with comma clauses (where tiny.en puts periods
    mid-clause) is one; a talk of 12 sentences is 12, periods or not (a pause of 300 ms ends one)."""
    write_wav(tmp_path / "a.wav", synthesize(text))
    assert main(["translate", "--audio", str(tmp_path / "a.wav"), "--pair", "en-de", "--model",
                 str(tiny_model_dir), "--policy", "wait-k", "--json"]) == 0
    done = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"done"' in x]
    assert len(done) == sentences, [d["source"] for d in done]
    assert_heard(" ".join(d["source"] for d in done), text, 0.5, done)
    # a sentence closed at a pause where Whisper wrote no period ends with one all the same
    assert all(d["source"].rstrip("\"'")[-1] in ".?!" for d in done), [d["source"] for d in done]


def test_translate_audio_live_view(tiny_model_dir, two_sentences_wav, capsys):
    assert main(["translate", "--audio", str(two_sentences_wav), "--pair", "en-zh", "--model",
                 str(tiny_model_dir), "--policy", "wait-k"]) == 0
    # the source column of the final table (a long source wraps onto more lines of its cell)
    lines = capsys.readouterr().out.splitlines()
    body = lines[max(i for i, line in enumerate(lines) if "┡" in line) + 1:]
    rows = [line.split("│") for line in body[: next(i for i, line in enumerate(body) if "└" in line)]]
    assert_clip_heard(" ".join(row[2].strip() for row in rows), lines)


def test_translate_audio_slots_decoding(tiny_model_dir, two_sentences_wav, capsys):
    """Each sentence is a slots episode whose region is reserved for --max-sentence-words words; a
    sentence reaching that many words is closed as if it ended."""
    args = ["translate", "--audio", str(two_sentences_wav), "--pair", "en-de", "--model", str(tiny_model_dir),
            "--policy", "wait-k", "--k", "2", "--decoding", "slots", "--json"]
    for limit in ("200", "3"):  # 200: the speaker's two sentences; 3: cut every 3 words as well
        assert main([*args, "--max-sentence-words", limit]) == 0
        events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        done = [e for e in events if e["type"] == "done"]
        # how many words Whisper hears varies by machine (tests/heard.py), so the count of sentences
        # follows from what it heard: each sentence of the speaker, cut into pieces of 3 words at most
        words = [len(d["source"].split()) for d in done]
        assert len(done) >= (2 if limit == "200" else -(-sum(words) // 3)) and events[-1]["type"] == "done"
        assert_clip_heard(" ".join(d["source"] for d in done), done)
        assert all(n <= int(limit) for n in words)
        writes = " ".join(e["text"] for e in events if e["type"] == "write")
        assert writes == " ".join(d["prediction"] for d in done if d["prediction"]) != ""


@pytest.mark.parametrize("extra, message", [
    (["--audio", "/nonexistent.wav"], "audio file not found"),
    (["--pair", "zh-en"], "English only"),
    (["--decoding", "slots", "--slot", "0"], "--slot must be at least 1"),
    (["--decoding", "slots", "--max-sentence-words", "0"], "--max-sentence-words must be at least 1"),
    (["--audio-chunk", "0"], "--audio-chunk must be positive"),
])
def test_translate_audio_bad_input_is_one_line(tiny_model_dir, two_sentences_wav, capsys, extra, message):
    args = ["translate", "--audio", str(two_sentences_wav), "--model", str(tiny_model_dir), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_translate_audio_takes_other_rates_and_refuses_junk(tiny_model_dir, tmp_path, capsys):
    import subprocess

    from seqpo.speech.synth import espeak_binary

    # espeak-ng's own 22.05 kHz wav, as it speaks
    spoken = subprocess.run([espeak_binary(), "-v", "en-us", "-s", "160", "--stdout", TWO_SENTENCES],
                            capture_output=True, check=True).stdout
    (tmp_path / "22k.wav").write_bytes(spoken)
    assert main(["translate", "--audio", str(tmp_path / "22k.wav"), "--pair", "en-de", "--model", str(tiny_model_dir),
                 "--json"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e for e in events if e["type"] == "done"]
    assert_heard(done[0]["source"], THANKS, SENTENCE_WER, done)
    assert_second_sentence(done[-1]["source"], done)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    (tmp_path / "empty.wav").write_bytes(b"")
    for name, message in (("junk.wav", "cannot read audio file"), ("empty.wav", "cannot read audio file")):
        assert main(["translate", "--audio", str(tmp_path / name), "--model", str(tiny_model_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_eval_audio_dir_resumes_and_scores_like_simuleval(tiny_model_dir, en_zh_files, tmp_path, capsys):
    from simuleval.evaluator.instance import LogInstance
    from simuleval.evaluator.scorers import latency_scorer as S

    src, ref = en_zh_files
    audio = tmp_path / "audio"
    # the fixture's third line is empty: a speech set needs a sentence per line
    assert main(["data", "speech", "--src", str(src), "--ref", str(ref), "--out", str(audio)]) == 2
    assert "empty lines" in capsys.readouterr().err
    assert main(["data", "speech", "--src", str(src), "--ref", str(ref), "--out", str(audio), "--limit", "2"]) == 0
    assert sorted(p.name for p in audio.iterdir()) == ["0000.wav", "0001.wav", "reference.zh", "source.en", "synth.jsonl"]
    out = tmp_path / "run"
    args = ["eval", "--pair", "en-zh", "--audio-dir", str(audio), "--model", str(tiny_model_dir),
            "--policy", "wait-k", "--k", "2", "--out", str(out), "--quiet"]
    assert main([*args, "--limit", "1"]) == 0
    first = (out / "instances.jsonl").read_text()
    assert main(args) == 0
    lines = (out / "instances.jsonl").read_text()
    assert lines.startswith(first) and len(lines.splitlines()) == 2  # resumed, the first kept
    scores = json.loads((out / "scores.json").read_text())
    assert scores["sentences"] == 2 and scores["signature"]["latency_unit"]["source"] == "ms of audio"
    assert 0 <= scores["WER"] <= 60  # two short espeak sentences; the benchmark measures WER properly
    for line in lines.splitlines():
        record = json.loads(line)
        assert record["source_length"] == pytest.approx(len(read_audio(record["audio"])) / 16.0)  # ms
        assert len(record["delays"]) == len(record["elapsed"]) == len(record["read_delays"])
        assert record["transcript"] in open(src, encoding="utf-8").read()
        fields = ("index", "prediction", "delays", "elapsed", "source_length", "reference")
        ins = LogInstance(json.dumps({k: record[k] for k in fields}), latency_unit="char")
        for name, cls in (("StartOffset", S.StartOffsetScorer), ("EndOffset", S.EndOffsetScorer),
                          ("AL", S.ALScorer), ("LAAL", S.LAALScorer)):
            for suffix, ca in (("", False), ("_CA", True)):
                theirs = cls(computation_aware=ca, use_ref_len=True).compute(ins)
                assert record["metric"][name + suffix] == pytest.approx(theirs, abs=1e-6)
    # YAAL in ms of audio, as the omnisteval command prints it from OUT/omnisteval
    theirs = omnisteval_cli(scores["signature"]["omnisteval"])
    for key, name in (("YAAL", "YAAL (CU)"), ("YAAL_CA", "YAAL (CA)")):
        assert scores[key] == pytest.approx(theirs[name], abs=1e-3)
    # other speech settings in the same folder are refused
    assert main([*args, "--audio-chunk", "1.0"]) == 2
    assert "other settings (audio_chunk" in capsys.readouterr().err


def test_speech_in_cached_decoding_gives_the_reencode_output(tiny_model_dir, two_sentences_wav, tmp_path, capsys):
    """cached decoding (the default) runs each spoken sentence as an engine episode, in translate
    --audio, eval --audio-dir and spoken long-form eval, and writes what re-encoding writes, when."""
    def events(decoding):
        assert main(["translate", "--audio", str(two_sentences_wav), "--pair", "en-de", "--model",
                     str(tiny_model_dir), "--json", "--decoding", decoding]) == 0
        return [{k: e.get(k) for k in ("type", "text", "read", "audio_ms", "prediction", "delays")}
                for e in map(json.loads, capsys.readouterr().out.splitlines())]

    cached = events("cached")
    assert cached == events("reencode") and [e["type"] for e in cached].count("done") >= 2
    audio = tmp_path / "audio"
    write_wav_set = ["data", "speech", "--pair", "en-de", "--src", str(tmp_path / "dev.en"), "--ref",
                     str(tmp_path / "dev.de"), "--out", str(audio)]
    (tmp_path / "dev.en").write_text("Thank you very much.\nI would like a cup of tea.\n")
    (tmp_path / "dev.de").write_text("Vielen Dank.\nIch möchte eine Tasse Tee.\n")
    assert main(write_wav_set) == 0
    runs = {}
    for decoding in ("cached", "reencode"):
        out = tmp_path / decoding
        assert main(["eval", "--pair", "en-de", "--audio-dir", str(audio), "--model", str(tiny_model_dir),
                     "--out", str(out), "--quiet", "--decoding", decoding]) == 0
        records = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
        runs[decoding] = [(r["prediction"], r["delays"], r["transcript"]) for r in records]
        assert json.loads((out / "scores.json").read_text())["signature"]["decoding"] == decoding
    assert runs["cached"] == runs["reencode"] and len(runs["cached"]) == 2
