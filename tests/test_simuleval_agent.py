"""`seqpo.integrations.simuleval.SeqpoTextAgent` run by SimulEval's own `simuleval` command: its
instances.log has the predictions and delays of `seqpo eval` on the same files."""

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
