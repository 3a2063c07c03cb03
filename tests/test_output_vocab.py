"""`--vocab seen` (output_vocab.py): the output layer restricted to a token set, on the tiny random
model with a set built for its own tokenizer the way the shipped one is built for the bundled
Gemma's: the kept logits are the full layer's, the rest -inf, greedy decoding is the full model's
wherever its choice is kept; it composes with adapters and int8; a set made for another
tokenizer is a one-line error."""

import json
import re

import numpy as np
import pytest
import torch
from conftest import CORPUS
from eval_resume import assert_recorded_and_resume_refused

from seqpo import output_vocab
from seqpo.cli import main
from seqpo.errors import SettingsError
from seqpo.model import load_model, load_model_adapters
from seqpo.output_vocab import RestrictedHead, kept_ids, save_token_set, structural_ids, tokenizer_digest

TEXT = "The weather is nice today."


@pytest.fixture
def tiny_seen(tiny_loaded, tmp_path, monkeypatch):
    """A seen set for the tiny tokenizer from its English lines only, in place of the shipped one."""
    path = tmp_path / "seen.npz"
    save_token_set(path, tiny_loaded.tokenizer, kept_ids(tiny_loaded.tokenizer, CORPUS[:2]))
    monkeypatch.setattr(output_vocab, "SEEN_SET", path)
    return torch.from_numpy(np.load(path)["ids"]).long()


def last_logits(loaded, text=TEXT):
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return loaded.model(input_ids=ids).logits[0]


def test_kept_logits_are_the_full_ones_and_the_rest_minus_inf(tiny_model_dir, tiny_loaded, tiny_seen):
    assert 0 < len(tiny_seen) < len(tiny_loaded.tokenizer)
    seen = load_model(str(tiny_model_dir), vocab="seen")
    assert isinstance(seen.model.get_output_embeddings(), RestrictedHead)
    full, restricted = last_logits(tiny_loaded), last_logits(seen)
    assert restricted.shape == full.shape
    torch.testing.assert_close(restricted[:, tiny_seen], full[:, tiny_seen], rtol=0, atol=1e-5)
    dropped = torch.ones(full.shape[-1], dtype=torch.bool)
    dropped[tiny_seen] = False
    assert torch.isneginf(restricted[:, dropped]).all()


def test_the_set_keeps_control_tokens_and_line_ends(tiny_loaded, tiny_seen):
    tok = tiny_loaded.tokenizer
    assert {tok.eos_token_id, tok.bos_token_id, tok.pad_token_id} <= set(tiny_seen.tolist())
    assert set(tok("\n", add_special_tokens=False).input_ids) <= set(tiny_seen.tolist())
    assert structural_ids(tok) <= set(tiny_seen.tolist())


def test_greedy_output_is_the_full_models_where_its_choices_are_kept(tiny_model_dir, tiny_loaded, tmp_path):
    tok = tiny_loaded.tokenizer
    prompt = tok(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        full = tiny_loaded.model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    chosen = set(full[0, prompt.shape[1]:].tolist())
    # the full model's choices plus every third other token: most of the vocabulary dropped
    kept = sorted(chosen | set(range(0, len(tok), 3)))
    assert len(kept) < len(tok) / 2
    path = tmp_path / "set.npz"
    save_token_set(path, tok, kept)
    restricted = load_model(str(tiny_model_dir))
    output_vocab.restrict_vocab(restricted.model, tok, "seen", path)
    with torch.inference_mode():
        same = restricted.model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(same, full)


def test_adapters_still_switch_on_the_restricted_head(tiny_model_dir, tiny_adapters, tiny_seen):
    adapters = {k: str(v) for k, v in tiny_adapters.items()}
    full = load_model_adapters(str(tiny_model_dir), adapters)
    seen = load_model_adapters(str(tiny_model_dir), adapters, vocab="seen")
    assert isinstance(seen.model.get_base_model().get_output_embeddings(), RestrictedHead)  # no LoRA on the head
    outs = []
    for name in tiny_adapters:
        full.model.set_adapter(name)
        seen.model.set_adapter(name)
        a, b = last_logits(full), last_logits(seen)
        torch.testing.assert_close(b[:, tiny_seen], a[:, tiny_seen], rtol=0, atol=1e-5)
        outs.append(b)
    assert not torch.equal(outs[0], outs[1])


def test_int8_quantizes_the_smaller_head(tiny_model_dir, tiny_seen):
    loaded = load_model(str(tiny_model_dir), vocab="seen", quantize="int8")
    head = loaded.model.get_output_embeddings()
    assert isinstance(head, RestrictedHead) and isinstance(head.kept, torch.ao.nn.quantized.dynamic.Linear)
    assert head.kept.weight().shape[0] == len(tiny_seen)
    logits = last_logits(loaded)
    assert torch.isfinite(logits[:, tiny_seen]).all() and torch.isneginf(logits).sum() == logits.shape[0] * (
        logits.shape[1] - len(tiny_seen))


@pytest.mark.parametrize("decoding", ["reencode", "cached", "append", "slots"])
def test_translate_writes_only_kept_tokens_in_every_decoding_mode(decoding, tiny_model_dir, tiny_loaded, tiny_seen,
                                                                   capsys):
    assert main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--vocab", "seen", "--json",
                 "--decoding", decoding, "--policy", "wait-k", "--k", "2", TEXT]) == 0
    done = [json.loads(x) for x in capsys.readouterr().out.splitlines()][-1]
    assert done["type"] == "done" and done["prediction"].strip()
    written = tiny_loaded.tokenizer(done["prediction"], add_special_tokens=False).input_ids
    # byte-level BPE may merge the written text differently; its characters must come from kept tokens
    kept_text = "".join(tiny_loaded.tokenizer.decode([i]) for i in tiny_seen.tolist())
    assert written and set(done["prediction"]) <= set(kept_text) | {" "}


def test_eval_records_the_vocab_and_refuses_to_resume_without_it(tiny_model_dir, tiny_seen, two_line_files, tmp_path,
                                                                  capsys):
    src, ref = two_line_files
    args = ["eval", "--pair", "en-zh", "--model", str(tiny_model_dir), "--src", str(src), "--ref", str(ref),
            "--quiet", "--policy", "wait-k"]
    assert_recorded_and_resume_refused(args, "--vocab", "seen", tmp_path / "run", capsys)


def test_a_set_for_another_tokenizer_is_a_one_line_error(tiny_model_dir, capsys):
    # the shipped set was built for the bundled Gemma's tokenizer, not the tiny one: a model load error
    assert main(["translate", "--model", str(tiny_model_dir), "--vocab", "seen", "hello"]) == 3
    err = capsys.readouterr().err.strip()
    assert "token set was built for a tokenizer of 262144 tokens" in err and len(err.splitlines()) == 1


def test_an_unknown_vocab_is_refused_before_loading(tiny_model_dir):
    with pytest.raises(SettingsError, match="--vocab must be one of full, seen"):
        load_model(str(tiny_model_dir / "absent"), vocab="all")  # the model is not even looked for


@pytest.mark.parametrize(("command", "offered"), [("translate", True), ("eval", True), ("serve", True),
                                                   ("sft", False), ("train", False)])
def test_only_inference_commands_offer_the_setting(command, offered, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert ("--vocab {full,seen}" in out) == offered


def test_names_are_kept_whatever_the_text(tiny_loaded):
    tok = tiny_loaded.tokenizer
    names = {i for t, i in tok.get_vocab().items() if re.fullmatch("[A-Z][a-z]+", t)}  # "The", "Software", ...
    assert names and names <= output_vocab.word_ids(tok) <= set(kept_ids(tok, []).tolist())


def test_the_digest_names_the_tokens_in_order(tiny_loaded):
    size, digest = tokenizer_digest(tiny_loaded.tokenizer)
    assert size == len(tiny_loaded.tokenizer) and len(digest) == 64


@pytest.mark.slow
def test_the_shipped_set_fits_the_bundled_tokenizer(real_model):
    from seqpo.generation import line_end_ids
    from seqpo.model import load_tokenizer

    tok = load_tokenizer(None)
    ids = set(output_vocab.load_token_set(tok).tolist())
    assert 0.2 < len(ids) / len(tok) < 0.4  # a third of the 262k, give or take
    assert set(line_end_ids(tok)) | set(tok.all_special_ids) <= ids
    for text in ("Das Wetter ist heute schön, 23 Grad.", "今天天气很好。", "今日は天気がいいです。",
                 "Walt Jr. bei Alibaba"):  # names, copied from a source as they are (whole-word pieces)
        assert set(tok(text, add_special_tokens=False).input_ids) <= ids
