"""Re-translation (`policies/retranslate.py`): every read translates the whole prefix again; the
episode records each display, scores the last one and dates its units by their last rewrite."""

import json
from dataclasses import replace

import pytest

from seqpo.cli import main
from seqpo.driver import EpisodeRun
from seqpo.errors import SettingsError
from seqpo.evaluate import EvalSettings
from seqpo.requests import Completion
from seqpo.languages import parse_pair
from seqpo.metrics.erasure import corpus_normalized_erasure, normalized_erasure
from seqpo.stream import retranslation_delays
from seqpo.policies import POLICY_NAMES, RetranslatePolicy, make_policy
from seqpo.policies.base import State, finish_request
from seqpo.simulate import run_episodes, stream_text
from seqpo.stream import Episode, Step

EN_DE = parse_pair("en-de")
EN_ZH = parse_pair("en-zh")


def test_a_first_class_policy():
    assert "retranslate" in POLICY_NAMES and isinstance(make_policy("retranslate"), RetranslatePolicy)
    assert EvalSettings.__dataclass_fields__["policy"].metadata["choices"] == list(POLICY_NAMES)


def test_each_step_asks_offline_final_request_on_the_prefix_from_scratch():
    pol = RetranslatePolicy()
    mid = State(EN_DE, "The weather", 2, False, "Das Wetter ist", 2)
    request = pol.plan(mid)
    # the display so far is neither in the prompt nor in the cap: the prefix is translated anew
    assert request == finish_request(replace(mid, target=""))
    assert request.prompt.endswith("English: The weather\nGerman:")
    done = Completion(" Das Wetter.", 4, 1.0, hit_newline=True)
    assert pol.segment(mid, done) == "Das Wetter"  # mid-sentence, the closing stop is not shown
    assert pol.segment(replace(mid, source_finished=True), done) == "Das Wetter."


def test_append_and_slots_decoding_are_refused():
    with pytest.raises(SettingsError, match="reencode or cached"):
        EvalSettings(policy="retranslate", decoding="append")
    assert EvalSettings(policy="retranslate", decoding="cached").policy == "retranslate"


def scripted_episode(answers: list[str], source: str = "a b c d") -> Episode:
    """`source` streamed through re-translation, the model answering `answers` in turn."""
    run = EpisodeRun.whole(EN_DE, RetranslatePolicy(), source)
    for i, text in enumerate(answers):
        planned = run.next_step()
        assert planned.state.target == (answers[i - 1].rstrip(".") if i else "")  # what is shown
        run.record(Completion(f" {text}", 3, 10.0 * (i + 1), hit_newline=True))
    assert run.done
    return run.episode


def test_displays_replace_each_other_and_date_units_by_their_last_rewrite():
    ep = scripted_episode(["A", "A B", "A C", "A C D E."])
    assert [s.display for s in ep.steps] == ["A", "A B", "A C", "A C D E."]
    assert all(s.written == "" for s in ep.steps)
    assert ep.prediction == "A C D E."
    # A from read 1; C rewrote B at read 3; D and E. at read 4
    assert ep.delays() == [1, 3, 4, 4]
    assert ep.delays() == retranslation_delays([(s.display, s.read) for s in ep.steps], "word")
    assert ep.elapsed() == [10.0, 60.0, 100.0, 100.0]  # cumulative model time at those updates
    assert normalized_erasure(ep.displays, "word") == 1 / 4  # B taken back, over 4 final words
    assert ep.wait_fraction == 0.0


def test_an_unchanged_display_is_a_wait():
    ep = scripted_episode(["A", "A", "A B", "A B C."])
    assert ep.wait_fraction == 1 / 4
    step = ep.steps[0].to_dict()
    assert step["display"] == "A" and step["written"] == ""


def test_appending_episodes_are_unchanged():
    ep = Episode("a b", "word", "word", [Step(1, "", 5.0), Step(2, "X Y", 7.0, finished=True)])
    assert not ep.retranslated and ep.prediction == "X Y" and ep.delays() == [2, 2]
    assert ep.elapsed() == [12.0, 12.0]
    assert "display" not in ep.steps[0].to_dict()  # instances.jsonl keeps its old fields


def test_tiny_model_episodes(tiny_loaded):
    from seqpo.generation import Generator

    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    sources = ["The weather is nice today.", "Our team released the new version of the software."]
    episodes = run_episodes(list(enumerate(sources)), RetranslatePolicy(), gen, EN_ZH, 1)
    assert len(episodes) == 2
    for ep in episodes:
        assert len(ep.steps) == ep.source_length and all(s.display is not None for s in ep.steps)
        assert ep.prediction == ep.steps[-1].display
        assert ep.delays() == retranslation_delays([(s.display, s.read) for s in ep.steps], "char")
        assert len(ep.delays()) == len(ep.elapsed())
    alone = stream_text(sources[0], RetranslatePolicy(), gen, EN_ZH, 1)
    assert [s.read for s in alone.steps] == [1, 2, 3, 4, 5]


def test_eval_reports_normalized_erasure(tiny_model_dir, en_zh_files, tmp_path):
    src, ref = en_zh_files
    out = tmp_path / "rt"
    args = ["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(tiny_model_dir),
            "--out", str(out), "--quiet", "--limit", "2"]
    assert main([*args, "--policy", "retranslate"]) == 0
    records = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
    scores = json.loads((out / "scores.json").read_text())
    for r in records:
        assert r["displays"] == [s["display"] for s in r["steps"]]
        assert r["prediction"] == r["displays"][-1]
        assert r["delays"] == retranslation_delays([(s["display"], s["read"]) for s in r["steps"]], "char")
    assert scores["NE"] == round(corpus_normalized_erasure([r["displays"] for r in records], "char"), 3)
    assert scores["signature"]["policy"] == "retranslate"
    assert main([*args, "--policy", "wait-k", "--out", str(tmp_path / "wk")]) == 0
    assert "NE" not in json.loads((tmp_path / "wk" / "scores.json").read_text())  # appending: nothing erased


def test_a_server_with_append_decoding_refuses_retranslate_sessions():
    from seqpo.serve import ServeSettings
    from seqpo.serve.protocol import ProtocolError, parse_config

    settings = ServeSettings(decoding="append")
    with pytest.raises(ProtocolError) as refused:
        parse_config({"policy": "retranslate"}, settings)
    assert refused.value.code == "bad_policy"
    assert parse_config({"policy": "retranslate"}, ServeSettings()).policy == "retranslate"
