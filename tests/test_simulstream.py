"""`seqpo.integrations.simulstream.SeqpoSpeechProcessor` run by simulstream's own commands
(`simulstream_inference`, `simulstream_score_latency`, `simulstream_score_quality`, as
subprocesses) on espeak-ng talks: its output, delays and scores are those of `seqpo eval
--long-form --audio-dir` on the same audio."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("simulstream")

import seqpo  # noqa: E402
from seqpo.cli import main  # noqa: E402
from seqpo.errors import SettingsError  # noqa: E402
from seqpo.integrations.simulstream import SeqpoSpeechProcessor, TalkText, seqpo_values, write_talks  # noqa: E402
from seqpo.stream import Step  # noqa: E402

SPOKEN = ["Our team released the new version of the software last week.",
          "The weather is nice today, and I would like a cup of tea.",
          "I like tea.",
          "We will meet again tomorrow morning."]
SPOKEN_DE = ["Unser Team hat letzte Woche die neue Version der Software veröffentlicht.",
             "Das Wetter ist heute schön, und ich hätte gern eine Tasse Tee.",
             "Ich mag Tee.",
             "Wir treffen uns morgen früh wieder."]
SPOKEN_ZH = ["我们团队上周发布了新版本的软件。", "今天天气很好，我想喝一杯茶。", "我喜欢茶。", "我们明天早上再见。"]
REFERENCES = {"de": SPOKEN_DE, "zh": SPOKEN_ZH}
UNITS = {"de": "word", "zh": "char"}
EXAMPLE = Path(seqpo.__file__).parent / "integrations" / "simulstream.yaml"


@pytest.fixture(scope="module")
def talks(tmp_path_factory):
    """Two talks of two sentences: `seqpo data speech` and `data long-form` of the same lines (for
    en-de and en-zh), and simulstream's wavs, audio definition and references (`write_talks`)."""
    root = tmp_path_factory.mktemp("simulstream")
    (root / "dev.en").write_text("".join(s + "\n" for s in SPOKEN))
    for target, references in REFERENCES.items():
        (root / f"dev.{target}").write_text("".join(s + "\n" for s in references))
        dev = ["--pair", f"en-{target}", "--src", str(root / "dev.en"), "--ref", str(root / f"dev.{target}")]
        assert main(["data", "speech", *dev, "--out", str(root / "audio")]) == 0  # the same wavs
        assert main(["data", "long-form", *dev, "--out", str(root / f"long.{target}.jsonl"), "--lines", "2"]) == 0
        assert write_talks(root / f"long.{target}.jsonl", root / "audio", f"en-{target}", root / f"talks.{target}") \
            == {"talks": 2, "sentences": 4, "folder": str(root / f"talks.{target}")}
    return root


def simulstream(command: str, *args: str) -> subprocess.CompletedProcess:
    """One of simulstream's console scripts (beside this Python's), with this checkout's seqpo."""
    return subprocess.run([str(Path(sys.executable).with_name(command)), *args], capture_output=True, text=True,
                          env=seqpo_env(), cwd=tempfile.gettempdir(), timeout=600, check=False)  # cwd: no stray files


def seqpo_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(seqpo.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}


def simulstream_popen(command: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name(command)), *args], env=seqpo_env(),
                            cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def infer(talks: Path, target: str, config: dict, out: Path, *langs: str) -> Path:
    """simulstream_inference over the talks with a config of `config`; returns its metrics log."""
    (out / "seqpo.yaml").write_text(yaml.safe_dump(config))
    log = out / "metrics.jsonl"
    done = simulstream("simulstream_inference", "--speech-processor-config", str(out / "seqpo.yaml"), "--wav-list-file",
                       str(talks / f"talks.{target}" / "talks.txt"), "--metrics-log-file", str(log), *langs)
    assert done.returncode == 0, done.stderr[-2000:]
    return log


def read_log(log: Path, unit: str = "word") -> dict:
    """simulstream's reading of its log: each talk's final text and ideal delays (s)."""
    from simulstream.metrics.readers import LogReader

    return LogReader(SimpleNamespace(detokenizer_type="simuleval", latency_unit=unit), str(log),
                     latency_unit=unit).final_outputs_and_latencies()


def long_form_eval(talks: Path, target: str, out: Path, *args: str) -> tuple[list[dict], dict]:
    assert main(["eval", "--pair", f"en-{target}", "--long-form", str(talks / f"long.{target}.jsonl"), "--audio-dir",
                 str(talks / "audio"), "--out", str(out), "--quiet", *args]) == 0
    records = sorted((json.loads(x) for x in (out / "streams.jsonl").read_text().splitlines()), key=lambda r: r["index"])
    return records, json.loads((out / "scores.json").read_text())


def assert_same_talks(theirs: dict, ours: list[dict], unit: str = "word") -> None:
    """simulstream's final texts and delays (s) are seqpo's predictions and delays (ms); zh/ja
    text without spaces (its units are seqpo's, non-space characters)."""
    assert list(theirs) == ["0000", "0001"]
    for talk, record in zip(theirs.values(), ours):
        assert talk.final_text == (record["prediction"] if unit == "word" else "".join(record["prediction"].split()))
        assert [d * 1000.0 for d in talk.ideal_delays] == pytest.approx(record["delays"], abs=1e-6)
    assert any(r["delays"] for r in ours)


@pytest.mark.parametrize("policy, target", [("wait-k", "de"), ("llm", "zh")])
def test_simulstream_inference_writes_what_seqpo_eval_long_form_does(policy, target, tiny_model_dir, talks, tmp_path):
    unit = UNITS[target]
    seqpo_args = {"policy": policy, "k": 2, "model": str(tiny_model_dir), "asr_vad": "silero"}
    log = infer(talks, target, {"type": "seqpo.integrations.simulstream.SeqpoSpeechProcessor", "speech_chunk_size": 0.4,
                                "detokenizer_type": "simuleval", "latency_unit": unit, **seqpo_args},
                tmp_path, "--src-lang", "en", "--tgt-lang", target)
    ours, scores = long_form_eval(talks, target, tmp_path / "eval", "--audio-chunk", "0.4",
                                  *[f"--{k.replace('_', '-')}={v}" for k, v in seqpo_args.items()])
    theirs = read_log(log, unit)
    assert_same_talks(theirs, ours, unit)
    # every unit is dated by the audio simulstream had sent: a multiple of the chunk, or the talk's end
    for talk, record in zip(theirs.values(), ours):
        assert all(round(d * 1000) % 400 == 0 or d * 1000 == pytest.approx(record["source_length"], abs=0.1)
                   for d in talk.ideal_delays)
    if unit == "char" and any(" " in r["prediction"].strip() for r in ours):
        return  # simulstream's zh text has no spaces: its re-segmentation may cut elsewhere
    # simulstream's scorers on its log: seqpo's StreamLAAL (s, not ms) and BLEU
    folder = talks / f"talks.{target}"
    definition = ["--eval-config", str(tmp_path / "seqpo.yaml"), "--log-file", str(log),
                  "--audio-definition", str(folder / "talks.yaml"), "--latency-unit", unit]
    latency = simulstream("simulstream_score_latency", *definition, "--reference", str(folder / f"reference.{target}"),
                          "--scorer", "stream_laal")
    assert latency.returncode == 0, latency.stderr[-2000:]
    ideal = float(re.search(r"ideal_latency=([0-9.]+)", latency.stdout).group(1))
    assert ideal * 1000.0 == pytest.approx(scores["StreamLAAL"], abs=1e-3)
    quality = score_quality(tmp_path, *definition, "--references", str(folder / f"reference.{target}"),
                            "--scorer", "sacrebleu", "--tokenizer", "zh" if target == "zh" else "13a")
    assert quality.returncode == 0, quality.stderr[-2000:]
    bleu = float(re.search(r"sacrebleu score: ([0-9.]+)", quality.stdout).group(1))
    assert round(bleu, 2) == scores["BLEU"]


def score_quality(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """simulstream_score_quality. Its scorer registry imports every scorer, COMET's too, which
    needs unbabel-comet (simulstream's eval extra, not seqpo's): where that is not installed, an
    empty stand-in module lets the import pass; the sacrebleu scorer never calls it."""
    import importlib.util

    if importlib.util.find_spec("comet") is not None:
        return simulstream("simulstream_score_quality", *args)
    shim = tmp_path / "shim" / "comet"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("download_model = load_from_checkpoint = None\n")
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim.parent), old])
    try:
        return simulstream("simulstream_score_quality", *args)
    finally:
        os.environ["PYTHONPATH"] = old


def test_retranslation_takes_back_what_it_rewrites(tiny_model_dir, talks, tmp_path):
    """Re-translation: simulstream's log takes units back and rewrites them, and its reading of it
    (final text, each unit dated by its last rewrite) is what the long-form speech eval records."""
    from seqpo.data.long_form import read_long_form
    from seqpo.evaluate import EvalSettings
    from seqpo.languages import parse_pair
    from seqpo.long_form import stream_record
    from seqpo.speech.long_form import run_spoken_streams, spoken_streams

    config = {"type": "seqpo.integrations.simulstream.SeqpoSpeechProcessor", "speech_chunk_size": 0.4,
              "pair": "en-de", "policy": "retranslate", "model": str(tiny_model_dir)}
    log = infer(talks, "de", config, tmp_path)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert any(x.get("deleted_tokens") for x in lines)  # something was taken back
    # `seqpo eval --long-form --audio-dir --policy retranslate` writes these records, then fails to
    # score them (a long-form re-translation has no computation-aware delays): its own functions here
    settings = EvalSettings(pair="en-de", policy="retranslate", model=str(tiny_model_dir), audio_chunk=0.4)
    streams = read_long_form(talks / "long.de.jsonl")
    spoken = spoken_streams(talks / "audio", streams, parse_pair("en-de"))
    ours = {}
    run_spoken_streams([s.index for s in streams], spoken, settings, None,
                       lambda i, episodes, _asr: ours.update({i: stream_record(i, [0] * len(episodes), episodes,
                                                                                 "word", speech=True)}))
    theirs = read_log(log)
    assert_same_talks(theirs, [ours[i] for i in sorted(ours)])

    # simulstream_server, to a client that streams 100 ms frames: the text its answers build
    # (each taking back its "deleted" string and adding its "new" one) is the talk's
    (tmp_path / "server.yaml").write_text(yaml.safe_dump({
        "hostname": "127.0.0.1", "port": free_port(), "pool_size": 2, "acquire_timeout": 60,
        "metrics": {"enabled": True, "filename": str(tmp_path / "server.jsonl")}}))
    server = simulstream_popen("simulstream_server", "--server-config", str(tmp_path / "server.yaml"),
                               "--speech-processor-config", str(tmp_path / "seqpo.yaml"))
    try:
        uri = f"ws://127.0.0.1:{yaml.safe_load((tmp_path / 'server.yaml').read_text())['port']}"
        for name in ("0000", "0001"):
            assert client_text(uri, talks / "talks.de" / f"{name}.wav", "de") == theirs[name].final_text
    finally:
        server.terminate()
        server.wait(timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_text(uri: str, wav: Path, target: str, frame_ms: int = 100) -> str:
    """A simulstream client streaming `wav` in frames: the text the server's answers build."""
    import time
    import wave

    from websockets.sync.client import connect

    with wave.open(str(wav)) as wf:
        rate, data = wf.getframerate(), wf.readframes(wf.getnframes())
    frame = int(rate * frame_ms / 1000) * 2  # 16-bit samples
    for _ in range(240):  # the server loads its models first
        try:
            ws = connect(uri, open_timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise AssertionError("simulstream_server did not start")
    text = ""
    with ws:
        ws.send(json.dumps({"sample_rate": rate, "source_lang": "en", "target_lang": target,
                            "metrics_metadata": {"wav_name": str(wav)}}))
        for i in range(0, len(data), frame):
            ws.send(data[i : i + frame])
        ws.send(json.dumps({"end_of_stream": True}))
        while "end_of_processing" not in (answer := json.loads(ws.recv(timeout=300))):
            assert text.endswith(answer["deleted"])
            text = text[: len(text) - len(answer["deleted"])] + answer["new"]
    return text


def test_talk_text_dates_every_rewritten_unit_by_the_call():
    words = TalkText("word")
    words.step(Step(1, "Guten"))
    words.step(Step(2, "Tag"))
    first = words.output()
    assert (first.new_tokens, first.new_string, first.deleted_tokens) == (["Guten", "Tag"], "Guten Tag", [])
    words.close_sentence()
    words.step(Step(1, "", display="Wie geht"))
    assert words.output().new_string == " Wie geht"  # after earlier words: its space
    words.step(Step(2, "", display="Wie"))  # taken back, then written again in the same call
    words.step(Step(3, "", display="Wie geht es"))
    out = words.output()
    assert (out.deleted_tokens, out.deleted_string, out.new_tokens, out.new_string) == \
        (["geht"], " geht", ["geht", "es"], " geht es")
    words.step(Step(4, ""))  # a wait
    assert words.output().new_tokens == [] and words.output().deleted_tokens == []
    chars = TalkText("char")  # zh/ja: characters, as seqpo counts them (spaces are not units)
    chars.step(Step(1, "你 好"))
    out = chars.output()
    assert (out.new_tokens, out.new_string) == (["你", "好"], "你好")


def config(**values) -> SimpleNamespace:
    return SimpleNamespace(type="seqpo.integrations.simulstream.SeqpoSpeechProcessor", **values)


def test_config_holds_seqpo_settings_and_refuses_the_rest(tiny_model_dir):
    values = seqpo_values(config(speech_chunk_size=0.5, policy="wait-k", k="4", few_shot=False, asr_vad="off",
                                 detokenizer_type="simuleval", latency_unit="word"))
    assert values == {"policy": "wait-k", "k": 4, "few_shot": "no", "asr_vad": "off", "audio_chunk": 0.5}
    # the shipped example is a valid config of simulstream's own reading
    from simulstream.config import yaml_config

    assert seqpo_values(yaml_config(str(EXAMPLE)))["audio_chunk"] > 0
    for bad, message in (({"polcy": "llm"}, "unknown setting 'polcy'"), ({"audio_chunk": 1}, "speech_chunk_size"),
                         ({"policy": "greedy"}, "must be one of"), ({"lookahead": 2}, "whole source"),
                         ({"detokenizer_type": "hf"}, "simuleval")):
        with pytest.raises(Exception, match=message):
            seqpo_values(config(speech_chunk_size=0.5, **bad))
    with pytest.raises(SettingsError, match="speech_chunk_size"):
        seqpo_values(config())


def test_pair_comes_from_simulstreams_languages(tiny_model_dir):
    processor = SeqpoSpeechProcessor(config(speech_chunk_size=0.5, model=str(tiny_model_dir)))
    processor.set_target_language("de")
    processor.set_source_language("en")
    assert [str(p.pair) for p in processor.parts.values()] == ["en-de"]
    assert processor.parts["en-de"].settings.adapter is None  # the tiny model: no shipped adapter
    processor.clear()  # a new talk: its languages are set again
    processor.source_lang = "de"
    with pytest.raises(SettingsError, match="English only"):
        processor.set_target_language("en")
    fixed = SeqpoSpeechProcessor(config(speech_chunk_size=0.5, model=str(tiny_model_dir), pair="en-de"))
    with pytest.raises(SettingsError, match="does not match --tgt-lang zh"):
        fixed.set_target_language("zh")
    counted = SeqpoSpeechProcessor(config(speech_chunk_size=0.5, model=str(tiny_model_dir), latency_unit="word"))
    with pytest.raises(SettingsError, match="latency_unit must be char"):
        counted.set_target_language("zh")


def test_a_config_error_ends_simulstream_in_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("type: seqpo.integrations.simulstream.SeqpoSpeechProcessor\n"
                                       "speech_chunk_size: 0.5\npolcy: wait-k\n")
    (tmp_path / "wavs.txt").write_text("none.wav\n")
    done = simulstream("simulstream_inference", "--speech-processor-config", str(tmp_path / "bad.yaml"),
                       "--wav-list-file", str(tmp_path / "wavs.txt"), "--tgt-lang", "de",
                       "--metrics-log-file", str(tmp_path / "metrics.jsonl"))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if " | INFO | " not in line]  # simulstream's log
    assert errors == ["seqpo (SeqpoSpeechProcessor): error: simulstream config: unknown setting 'polcy'"]
    assert "Traceback" not in done.stderr
