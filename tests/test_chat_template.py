"""Prompts in the model's chat template (`--chat-template`): the ids every path builds (generation,
the cached engine, SFT examples, rollouts) against the tokenizer's own `apply_chat_template`, and
when the setting applies. The tiny Qwen2 carries a ChatML-shaped template; the tiny Gemma-3 none."""

from __future__ import annotations

import json

import pytest

from conftest import build_tiny_model
from seqpo.cli import main
from seqpo.errors import SettingsError
from seqpo.generation import Generator
from seqpo.languages import parse_pair
from seqpo.model import load_model, uses_chat_template
from seqpo.policies.base import State
from seqpo.policies.llm import LLMPolicy
from seqpo.prompts import ChatFormat, seqpo_prompt
from seqpo.sft import format_example, tokenize_example

PAIR = parse_pair("en-zh")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-chat"), "qwen2", chat_template=True)


@pytest.fixture(scope="module")
def chat_loaded(qwen_dir):
    return load_model(str(qwen_dir), chat_template="auto")


def _template_ids(tok, user: str) -> list[int]:
    out = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _state(source: str, target: str) -> State:
    return State(PAIR, source, len(source.split()), False, target, len(source.split()))


def test_generator_prompt_ids_are_the_chat_template_then_the_target_line(chat_loaded):
    tok = chat_loaded.tokenizer
    assert chat_loaded.chat == ChatFormat("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
    request = LLMPolicy(max_step_tokens=3).plan(_state("The weather is nice", "今天天气"))
    # built independently: the instruction, few-shot block and source line are the user's message;
    # the assistant's turn opens with the target line so far, which the model continues
    user = request.prefix + "Translate from English to Chinese in a streaming style:\nEnglish: The weather is nice"
    expected = _template_ids(tok, user) + tok("Chinese: 今天天气", add_special_tokens=False).input_ids
    generator = Generator(chat_loaded.model, tok, chat=chat_loaded.chat)
    completion = generator.complete([request])[0]
    assert completion.prompt_ids == expected == generator.prompt_ids(request)
    assert tok.bos_token_id not in expected  # the template owns the special tokens: no BOS added
    # the plain prompt is unchanged without a chat format
    plain = Generator(chat_loaded.model, tok).prompt_ids(request)
    assert plain == tok(request.prefix).input_ids + tok(request.prompt, add_special_tokens=False).input_ids


def test_cached_engine_uses_the_same_prompt_ids(chat_loaded):
    from seqpo.engine import make_engine

    request = LLMPolicy(max_step_tokens=3).plan(_state("The weather", ""))
    engine = make_engine(chat_loaded, "cached")
    state = engine.open(PAIR)
    engine.start(state, request)
    finished = []
    while not finished:
        finished = engine.advance()
    completion = finished[0][1][-1]
    assert completion.prompt_ids == Generator(chat_loaded.model, chat_loaded.tokenizer,
                                              chat=chat_loaded.chat).prompt_ids(request)
    assert make_engine(chat_loaded, "append").generator.chat is None  # append has its own format


def test_live_cached_engine_uses_the_same_prompt_ids(chat_loaded):
    """A live sentence (`EngineSet`: the SimulEval agent, serve) in cached decoding, in the chat format."""
    from seqpo.live_engines import EngineSet

    request = LLMPolicy(max_step_tokens=3).plan(_state("The weather", ""))
    engines = EngineSet(chat_loaded.model, chat_loaded.tokenizer, "cached", chat=chat_loaded.chat)
    stream = engines.open_row(PAIR)
    engines.read(stream, "The weather", last=False)
    completion = engines.complete([request], [stream])[0]
    assert completion.prompt_ids == Generator(chat_loaded.model, chat_loaded.tokenizer,
                                              chat=chat_loaded.chat).prompt_ids(request)
    append = EngineSet(chat_loaded.model, chat_loaded.tokenizer, "append", chat=chat_loaded.chat)
    assert append.engine(append.open_row(PAIR)).generator.chat is None  # append has its own format


def test_eval_cached_equals_reencode_and_off_changes_the_prompt(qwen_dir, chat_loaded, two_line_files, tmp_path,
                                                                capsys):
    src, ref = two_line_files
    predictions = {}
    for mode in ("reencode", "cached"):
        out = tmp_path / mode
        assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(qwen_dir),
                     "--decoding", mode, "--batch-size", "1", "--out", str(out),
                     "--quiet"]) == 0
        scores = json.loads((out / "scores.json").read_text())
        assert scores["signature"]["chat_template"] == "on"
        assert json.loads((out / "settings.json").read_text())["chat_template"] == "on"
        rows = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
        predictions[mode] = [r["prediction"] for r in sorted(rows, key=lambda r: r["index"])]
    assert predictions["cached"] == predictions["reencode"]
    off = tmp_path / "off"
    assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(qwen_dir),
                 "--chat-template", "off", "--out", str(off), "--quiet"]) == 0
    assert json.loads((off / "scores.json").read_text())["signature"]["chat_template"] == "off"
    plain = load_model(str(qwen_dir), chat_template="off")
    assert plain.chat is None
    request = LLMPolicy().plan(_state("The weather", ""))
    assert Generator(plain.model, plain.tokenizer).prompt_ids(request) != \
        Generator(chat_loaded.model, chat_loaded.tokenizer, chat=chat_loaded.chat).prompt_ids(request)
    # a run recorded before the setting existed had no chat template: it resumes as off, not as on
    settings = json.loads((off / "settings.json").read_text())
    del settings["chat_template"]
    (off / "settings.json").write_text(json.dumps(settings))
    assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(qwen_dir),
                 "--chat-template", "off", "--out", str(off), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(qwen_dir),
                 "--out", str(off), "--quiet"]) == 2
    assert "chat_template" in capsys.readouterr().err


def test_sft_example_is_the_inference_prompt_then_the_segment(chat_loaded):
    tok, chat = chat_loaded.tokenizer, chat_loaded.chat
    prompt, completion = format_example(PAIR, "The weather is", "今天", "天气")
    example = tokenize_example(tok, prompt, completion, max_length=512, chat=chat)
    # an adapter decodes without few-shot examples: the request the policy makes at that step
    request = LLMPolicy(few_shot=False).plan(_state("The weather is", "今天"))
    assert request.prefix == "" and request.prompt == prompt == seqpo_prompt(PAIR, "The weather is", "今天")
    segment = tok(completion, add_special_tokens=False).input_ids
    assert example["input_ids"] == Generator(chat_loaded.model, tok, chat=chat).prompt_ids(request) + segment
    assert example["labels"][-len(segment):] == segment
    assert set(example["labels"][:-len(segment)]) == {-100}


def test_auto_and_on(tiny_model_dir, qwen_dir, two_line_files, capsys):
    assert uses_chat_template("auto", str(qwen_dir), "reencode")
    assert uses_chat_template("auto", str(qwen_dir), "cached")
    assert not uses_chat_template("auto", str(qwen_dir), "append")
    assert not uses_chat_template("auto", str(qwen_dir), "slots")
    assert not uses_chat_template("off", str(qwen_dir), "reencode")
    assert not uses_chat_template("auto", str(tiny_model_dir), "reencode")  # no template
    # the bundled base model and its shipped adapters keep the plain prompt (decided without loading it)
    for bundled in (None, "bundled:gemma-3-270m", "bundled"):
        assert not uses_chat_template("auto", bundled, "reencode")
    assert load_model(str(tiny_model_dir), chat_template="auto").chat is None
    with pytest.raises(SettingsError):
        uses_chat_template("on", str(tiny_model_dir), "reencode")
    src, ref = two_line_files
    for extra in (["--model", str(qwen_dir), "--decoding", "slots"], ["--model", str(tiny_model_dir)]):
        capsys.readouterr()
        assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", "unused",
                     "--chat-template", "on", *extra, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "chat-template" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("rollouts", ["cached", "generate"])
def test_train_one_step_in_the_chat_format(qwen_dir, two_line_files, tmp_path, rollouts):
    src, ref = two_line_files
    run = tmp_path / "run"
    assert main(["train", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", str(run),
                 "--model", str(qwen_dir), "--adapter", "none", "--steps", "1", "--sources", "1", "--group", "2",
                 "--max-step-tokens", "4", "--rollouts", rollouts, "--bf16", "no", "--quiet"]) == 0
    assert json.loads((run / "settings.json").read_text())["chat_template"] == "on"
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 1 and log[0]["tokens"] > 0
    # the update scores the sampled tokens on the same prompt ids the rollouts saw
    assert log[0]["logp_gap"] < 1e-4
