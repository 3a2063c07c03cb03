"""The real bundled Gemma-3-270M on two sentences (slow: dequantizes the GGUF once, ~1 min)."""

import json

import pytest

from seqpo.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _real_model(real_model):
    # the bundled model from the run's shared read-only copy (conftest.real_model_copy): converted
    # once per run under tmp, never read from or written to the user's cache
    return real_model


def test_bundled_model_translates_two_sentences(tmp_path, capsys):
    src = tmp_path / "two.en"
    ref = tmp_path / "two.de"
    src.write_text("The weather is nice today.\nI would like a cup of tea, please.\n")
    ref.write_text("Das Wetter ist heute schön.\nIch hätte gern eine Tasse Tee, bitte.\n")
    out = tmp_path / "run"
    # the bare model, few-shot: the shipped en-de adapter (the default) learned to wait, and may end a
    # wait-k write step with nothing
    code = main(["eval", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--policy", "wait-k",
                 "--k", "2", "--adapter", "none", "--out", str(out), "--quiet"])
    assert code == 0
    records = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["prediction"].strip()  # the real model writes German, not nothing
        assert r["delays"][0] == 2  # wait-2 writes first after the second word
    scores = json.loads((out / "scores.json").read_text())
    # a real 270M model with few-shot prompting gets simple sentences partly right
    assert scores["chrF"] > 20
    assert 1.0 <= scores["AL"] <= 6.0


def shipped_adapter_events(pair: str, capsys) -> list[dict]:
    """`seqpo translate --json` on the default (shipped) adapter of `pair`: the events, ending in a
    non-empty translation."""
    code = main(["translate", "--pair", pair, "--json",
                 "The city council approved the new budget for public schools yesterday."])
    assert code == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["prediction"].strip()
    return events


def test_shipped_adapter_streams_en_zh(capsys):
    """The default en-zh policy is the shipped SeqPO adapter, zero-shot: Chinese comes out, some of it early."""
    events = shipped_adapter_events("en-zh", capsys)
    assert any(ch >= "\u4e00" for ch in events[-1]["prediction"])  # Chinese characters came out
    assert any(e["type"] == "write" and e["read"] < 11 for e in events)  # writes before the last word


def test_shipped_adapter_streams_en_de(capsys):
    """The default en-de policy is the shipped warm-up adapter: German comes out, some of it early."""
    events = shipped_adapter_events("en-de", capsys)
    assert any(e["type"] == "wait" for e in events)
    assert any(e["type"] == "write" and e["read"] < 11 for e in events)  # writes before the last word
