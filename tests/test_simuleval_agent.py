"""`seqpo.integrations.simuleval.SeqpoTextAgent` and `SeqpoSpeechAgent` run by SimulEval's own
`simuleval` command: their instances.log has the predictions and delays of `seqpo eval` (`--src` or
`--audio-dir`) on the same files."""

import json
import sys
from argparse import ArgumentParser, Namespace

import pytest

pytest.importorskip("simuleval")

from seqpo.cli import main  # noqa: E402
from seqpo.errors import SettingsError  # noqa: E402
from seqpo.integrations.simuleval import SeqpoTextAgent, agent_settings  # noqa: E402

CASES = [("wait-k", 1), ("wait-k", 2), ("llm", 1), ("llm", 2)]  # (policy, --chunk)


@pytest.fixture
def three_lines(en_zh_files, tmp_path):
    """The first three lines of the tiny en-zh set (the third is empty)."""
    src, ref = (tmp_path / "src.en", tmp_path / "ref.zh")
    for path, full in zip((src, ref), en_zh_files):
        path.write_text("\n".join(full.read_text(encoding="utf-8").splitlines()[:3]) + "\n", encoding="utf-8")
    return src, ref


def run_simuleval(args: list[str], monkeypatch) -> None:
    """SimulEval's command line, in this process (it reads sys.argv)."""
    from simuleval import cli
    from simuleval.utils import agent

    monkeypatch.setattr(agent, "EVALUATION_SYSTEM_LIST", [])  # classes resolved by earlier runs
    monkeypatch.setattr(sys, "argv", ["simuleval", *args])
    cli.main()


@pytest.mark.parametrize("policy, chunk", CASES)
def test_simuleval_logs_the_delays_of_seqpo_eval(policy, chunk, tiny_model_dir, three_lines, tmp_path, monkeypatch):
    src, ref = three_lines
    args = ["--pair", "en-zh", "--policy", policy, "--k", "2", "--chunk", str(chunk), "--model", str(tiny_model_dir),
            "--decoding", "reencode"]
    run_simuleval(["--agent-class", "seqpo.integrations.simuleval.SeqpoTextAgent", "--source", str(src),
                   "--target", str(ref), "--eval-latency-unit", "char", "--sacrebleu-tokenizer", "zh",
                   "--no-progress-bar", "--output", str(tmp_path / "simuleval"), *args], monkeypatch)
    # batch size 1: padding in a batch shifts the tiny random model's near-tied logits
    assert main(["eval", "--src", str(src), "--ref", str(ref), "--out", str(tmp_path / "eval"), "--batch-size", "1",
                 "--quiet", *args]) == 0
    ours = sorted((json.loads(x) for x in (tmp_path / "eval" / "instances.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])
    theirs = [json.loads(x) for x in (tmp_path / "simuleval" / "instances.log").read_text().splitlines()]
    assert [r["index"] for r in theirs] == [0, 1, 2]
    assert [r["prediction"] for r in theirs] == [r["prediction"] for r in ours]
    assert [r["delays"] for r in theirs] == [r["delays"] for r in ours]
    assert [r["source_length"] for r in theirs] == [r["source_length"] for r in ours] == [5, 8, 0]
    assert ours[0]["delays"] and ours[1]["delays"]  # something was written
    if chunk == 2:  # reads of two words: every write before the last step's after an even count
        assert all(d % 2 == 0 for r in ours for d in r["delays"] if d != r["source_length"])


def test_agent_flags_are_policy_settings_and_simuleval_device_dtype():
    parser = ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp16", "fp32"])
    SeqpoTextAgent.add_args(parser)  # no clash with SimulEval's own --device/--dtype
    args = parser.parse_args(["--policy", "wait-k", "--k", "4", "--chunk", "2", "--dtype", "fp16",
                              "--decoding", "cached"])
    s = agent_settings(args)
    assert (s.policy, s.k, s.chunk, s.decoding, s.device, s.dtype) == ("wait-k", 4, 2, "cached", "cpu", "float16")
    assert agent_settings(parser.parse_args([])).dtype == "auto"
    with pytest.raises(SettingsError, match="at least 1"):
        agent_settings(parser.parse_args(["--chunk", "0"]))


def test_chinese_targets_need_char_latency_units():
    args = Namespace(pair="en-zh", eval_latency_unit="word", device="cpu", dtype=None)
    with pytest.raises(SettingsError, match="--eval-latency-unit char"):
        SeqpoTextAgent(args)


# -- the speech agent: SimulEval's audio segments through seqpo's speech cascade ------------------

SPOKEN = ["Our team released the new version of the software last week.",
          "The weather is nice today, and I would like a cup of tea."]
SPOKEN_DE = ["Unser Team hat letzte Woche die neue Version der Software veröffentlicht.",
             "Das Wetter ist heute schön, und ich hätte gern eine Tasse Tee."]


@pytest.fixture(scope="module")
def speech_set(tmp_path_factory):
    """`seqpo data speech`'s folder for two espeak-ng sentences, and SimulEval's list of its wavs."""
    from seqpo.speech.synth import build_speech_set

    folder = build_speech_set(SPOKEN, SPOKEN_DE, tmp_path_factory.mktemp("speech-set"), "de")
    wav_list = folder.parent / "wavs.txt"
    wav_list.write_text("".join(f"{folder / f'{i:04d}.wav'}\n" for i in range(len(SPOKEN))))
    return folder, wav_list


@pytest.mark.parametrize("policy", ["wait-k", "llm"])
def test_speech_agent_logs_the_delays_of_seqpo_eval_audio_dir(
        policy, tiny_model_dir, speech_set, tmp_path, monkeypatch):
    folder, wav_list = speech_set
    args = ["--pair", "en-de", "--policy", policy, "--k", "2", "--model", str(tiny_model_dir)]
    run_simuleval(["--agent-class", "seqpo.integrations.simuleval.SeqpoSpeechAgent", "--source", str(wav_list),
                   "--target", str(folder / "reference.de"), "--source-type", "speech", "--target-type", "text",
                   "--source-segment-size", "400", "--no-progress-bar", "--output", str(tmp_path / "simuleval"),
                   *args], monkeypatch)
    assert main(["eval", "--audio-dir", str(folder), "--audio-chunk", "0.4", "--out", str(tmp_path / "eval"),
                 "--quiet", *args]) == 0
    ours = sorted((json.loads(x) for x in (tmp_path / "eval" / "instances.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])
    theirs = [json.loads(x) for x in (tmp_path / "simuleval" / "instances.log").read_text().splitlines()]
    assert [r["index"] for r in theirs] == [0, 1]
    assert [r["prediction"] for r in theirs] == [r["prediction"] for r in ours]
    assert [r["delays"] for r in theirs] == [r["delays"] for r in ours]
    assert [r["source_length"] for r in theirs] == [r["source_length"] for r in ours]
    assert all(r["delays"] for r in ours)
    # a write waits for a word Whisper made stable: never before the first decode (1 s), always
    # at a segment's end (a multiple of 400 ms) or at the end of the audio
    for r in ours:
        assert all(d >= 1000.0 and (d % 400 == 0 or d == r["source_length"]) for d in r["delays"])
    assert any(d < r["source_length"] for r in ours for d in r["delays"])  # not all written at the end


def simuleval_parser() -> ArgumentParser:
    """SimulEval's own command-line parser for a speech-to-text run (without the agent's flags)."""
    from simuleval import options

    cli = ["--source-type", "speech", "--target-type", "text"]
    parser = options.general_parser()
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser, cli)
    options.add_slurm_args(parser)
    options.add_dataloader_args(parser, cli)
    return parser


def test_speech_agent_flags_do_not_shadow_simulevals():
    """SimulEval's parser resolves a clash by silently replacing its own flag: none may clash."""
    from seqpo.integrations.simuleval import SeqpoSpeechAgent, speech_agent_settings

    theirs = {o for a in simuleval_parser()._actions for o in a.option_strings}
    ours = ArgumentParser(add_help=False)
    SeqpoSpeechAgent.add_args(ours)
    flags = {o for a in ours._actions for o in a.option_strings}
    assert {"--asr-vad", "--asr-window", "--max-buffer", "--policy", "--chunk"} <= flags
    assert "--audio-chunk" not in flags and not flags & theirs
    parser = simuleval_parser()
    SeqpoSpeechAgent.add_args(parser)
    args, _ = parser.parse_known_args(["--source-segment-size", "320", "--pair", "en-de", "--asr-vad", "off",
                                       "--fp16"])
    s = speech_agent_settings(args)
    assert (s.audio_chunk, s.asr_vad, s.dtype, s.device) == (0.32, "off", "float16", "cpu")
    for bad, message in ((["--pair", "zh-en"], "English only"), (["--policy", "retranslate"], "take back"),
                         (["--source-segment-size", "20000"], "--max-buffer longer"),
                         (["--source-segment-size", "1"], "in ms of audio")):
        with pytest.raises(SettingsError, match=message):
            speech_agent_settings(parser.parse_known_args(["--pair", "en-de", "--source-segment-size", "500", *bad])[0])
    with pytest.raises(SettingsError, match="in ms of audio"):  # SimulEval's default segment is 1
        speech_agent_settings(parser.parse_known_args(["--pair", "en-de"])[0])
