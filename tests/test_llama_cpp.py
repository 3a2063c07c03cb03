"""`--quantize gguf`: the bundled Gemma's GGUF on llama.cpp, behind the completer interface.

The slow tests run the real model (llama.cpp needs a real GGUF; the tiny random test models are
HF checkpoints). They never pin its words: they compare llama.cpp's logits with torch's on the same
weights, check what a converted LoRA adapter moves, and check properties of whole translations.
Where gguf cannot apply, a one-line error before any model loads (fast, on the tiny model)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from eval_resume import assert_recorded_and_resume_refused
from seqpo.cli import main

PROMPT = "Translate English to German.\nEnglish: The city council approved the new budget for public schools.\nGerman:"


@pytest.mark.parametrize(("extra", "message"), [
    (["--decoding", "append"], "reencode or cached"),
    (["--decoding", "slots"], "reencode or cached"),
    ([], "runs a GGUF file"),  # an HF checkpoint folder is not a GGUF
    (["--dtype", "bfloat16"], "no --dtype"),
    (["--vocab", "seen"], "--vocab full"),
])
def test_where_gguf_cannot_apply_is_one_line(extra, message, tiny_model_dir, capsys):
    code = main(["translate", "--model", str(tiny_model_dir), "--quantize", "gguf", "--policy", "wait-k", *extra,
                 "hello there"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_without_llama_cpp_the_error_names_the_extra(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if the extra were not installed
    assert main(["translate", "--model", str(tiny_model_dir), "--quantize", "gguf", "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[llama-cpp]'" in err and len(err.splitlines()) == 1


# -- the real model -------------------------------------------------------------------------------
@pytest.fixture
def gguf_cache(real_model_copy, tmp_path, monkeypatch):
    """A cache of this test's own (converted adapters are written there) whose bundled model and
    GGUF are the run's shared read-only copies."""
    cache = tmp_path / "gguf-cache"
    cache.mkdir()
    for name in ("gemma-3-270m", "gguf"):
        (cache / name).symlink_to(real_model_copy / name)
    monkeypatch.setenv("SEQPO_CACHE", str(cache))
    return cache


def _random_adapter(model, path, seed: int = 0):
    """A LoRA adapter on q/k/v/o of the real model whose B factors are small random numbers (peft
    starts them at zero): it moves the logits clearly without wrecking the model."""
    from peft import LoraConfig, get_peft_model

    from seqpo.model import quiet_peft

    torch.manual_seed(seed)
    with quiet_peft():
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                          "o_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    with quiet_peft():
        peft_model.save_pretrained(path)
    return peft_model


def _corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


@pytest.mark.slow
def test_converted_lora_moves_llama_cpp_as_peft_moves_torch(gguf_cache, tmp_path):
    from seqpo.llama_cpp_backend import LlamaCppModel, gguf_path, lora_gguf
    from seqpo.model import load_model

    loaded = load_model(None)
    ids = loaded.tokenizer(PROMPT).input_ids
    peft_model = _random_adapter(loaded.model, tmp_path / "adapter")
    with torch.inference_mode():
        torch_on = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        with peft_model.disable_adapter():
            torch_off = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()

    path = gguf_path(None)
    lm = LlamaCppModel(path, {"a": lora_gguf(str(tmp_path / "adapter"), path)})
    gen = lm.completer(loaded.tokenizer)
    logits = {name: gen.feed(ids, name).logits(lm.n_vocab).copy() for name in ("a", None)}
    # the same weights (the torch copy is the GGUF dequantized): llama.cpp differs by its int8
    # activations only
    assert _corr(logits[None], torch_off) > 0.99
    assert _corr(logits["a"], torch_on) > 0.99
    # the adapter moves both the same way and by the same amount: a wrong factor order, scale
    # or tensor mapping would not
    moved_torch, moved_cpp = torch_on - torch_off, logits["a"] - logits[None]
    assert np.linalg.norm(moved_torch) > 0.05 * np.linalg.norm(torch_off)  # the adapter does move it
    assert _corr(moved_cpp, moved_torch) > 0.9
    assert 0.8 < np.linalg.norm(moved_cpp) / np.linalg.norm(moved_torch) < 1.25
    # converted once: a second load of the same adapter finds it in the cache
    assert lora_gguf(str(tmp_path / "adapter"), path) == lm.adapter_files["a"]
    assert len(list((gguf_cache / "gguf-lora").iterdir())) == 1 + 1  # the folder and its lock file


@pytest.mark.slow
def test_a_prompt_sharing_a_prefix_runs_only_its_new_tokens(gguf_cache):
    from seqpo.llama_cpp_backend import LlamaCppModel, gguf_path
    from seqpo.model import load_tokenizer

    tokenizer = load_tokenizer(None)
    first = tokenizer(PROMPT).input_ids
    second = tokenizer(PROMPT.replace("schools.", "schools and libraries.")).input_ids
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    model = LlamaCppModel(gguf_path(None), {}, contexts=2)
    gen = model.completer(tokenizer)
    gen.feed(first, None)
    before = gen.tokens_processed
    kept = gen.feed(second, None).logits(model.n_vocab).copy()
    assert gen.tokens_processed - before == len(second) - shared  # the shared prefix was not run again
    assert len(model._contexts) == 1
    fresh = LlamaCppModel(gguf_path(None), {})  # held: its contexts die with it
    ran = fresh.completer(tokenizer).feed(second, None).logits(model.n_vocab).copy()
    assert _corr(kept, ran) > 0.999 and int(np.argmax(kept)) == int(np.argmax(ran))
    # interleaved episodes keep a context each: going back to the first prompt runs nothing again
    third = tokenizer(PROMPT.replace("council", "committee")).input_ids
    gen.feed(third, None)
    assert len(model._contexts) == 2
    before = gen.tokens_processed
    gen.feed(second, None)
    assert gen.tokens_processed - before == 1  # only the last id, for its logits


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["en-de", "en-zh"])
def test_translate_streams_on_the_shipped_adapter(pair, gguf_cache, capsys):
    """The shipped adapter, converted for llama.cpp, streams a translation into the target
    language, writing before the source ends."""
    assert main(["translate", "--pair", pair, "--quantize", "gguf", "--json",
                 "The city council approved the new budget for public schools yesterday."]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = events[-1]
    assert done["type"] == "done" and done["prediction"].strip()
    written = "".join(e["text"] for e in events if e["type"] == "write")
    assert written.replace(" ", "") == done["prediction"].replace(" ", "")  # the writes are the translation
    assert any(e["type"] == "write" and e["read"] < 11 for e in events)
    if pair == "en-zh":
        assert any(ch >= "\u4e00" for ch in done["prediction"])


@pytest.mark.slow
def test_eval_records_gguf_and_scores_like_the_torch_model(gguf_cache, tmp_path, capsys):
    src, ref = tmp_path / "two.en", tmp_path / "two.de"
    src.write_text("The weather is nice today.\nI would like a cup of tea, please.\n")
    ref.write_text("Das Wetter ist heute schön.\nIch hätte gern eine Tasse Tee, bitte.\n")
    args = ["eval", "--pair", "en-de", "--src", str(src), "--ref", str(ref), "--policy", "wait-k", "--k", "2",
            "--adapter", "none", "--quiet"]
    scores = assert_recorded_and_resume_refused(args, "--quantize", "gguf", tmp_path / "gguf", capsys)
    assert scores["chrF"] > 20  # as the torch path's own real-model test asks of the same lines
