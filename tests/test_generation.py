"""Batched generation with a cached prefix must give the same greedy tokens as plain generation."""

import pytest
import torch

from seqpo.generation import Generator
from seqpo.requests import Request


def plain_greedy(loaded, prefix, prompt, max_new):
    tok = loaded.tokenizer
    ids = tok(prefix, return_tensors="pt").input_ids
    suffix = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([ids, suffix], 1)
    out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]


def test_cached_prefix_batch_equals_plain_generation(tiny_loaded):
    prefix = "Translate from English to German in a streaming style:\nEnglish: hello\nGerman: Hallo\n\n"
    prompts = ["English: The weather\nGerman:", "English: Our team released the new version\nGerman: Unser",
               "English: tea\nGerman:"]
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, batch_size=3)
    got = gen.complete([Request(prefix, p, max_new_tokens=12, unit="word") for p in prompts])
    for p, c in zip(prompts, got):
        assert c.text == plain_greedy(tiny_loaded, prefix, p, 12)
    # a second call reuses the cached prefix and still agrees
    again = gen.complete([Request(prefix, prompts[1], max_new_tokens=12, unit="word")])
    assert again[0].text == got[1].text


def test_unit_limit_stops_rows_independently(tiny_loaded):
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, batch_size=4)
    reqs = [Request("", "Das Wetter", max_new_tokens=40, max_units=2, unit="char"),
            Request("", "Das Wetter", max_new_tokens=5, unit="word")]
    a, b = gen.complete(reqs)
    assert a.new_tokens <= 40 and b.new_tokens <= 5
    assert gen.tokens_processed > 0


def test_must_write_rows_never_end_the_line_first(tiny_loaded):
    from seqpo.generation import line_end_ids

    tok = tiny_loaded.tokenizer
    gen = Generator(tiny_loaded.model, tok, batch_size=2)
    # bias the tiny model so that ending the line is by far the most likely next token
    nl = line_end_ids(tok)

    def favour_newline(_module, _inputs, logits):
        logits[..., nl] += 100.0
        return logits

    hook = tiny_loaded.model.lm_head.register_forward_hook(favour_newline)
    try:
        free, forced = gen.complete([Request("", "Das", max_new_tokens=3, unit="word"),
                                     Request("", "Das", max_new_tokens=3, unit="word", must_write=True)])
    finally:
        hook.remove()
    assert free.new_tokens == 1 and free.text == ""  # ends the line at once: a wait
    assert forced.new_tokens >= 2  # its first token was not allowed to end the line


def test_named_adapters_match_single_adapter_models(tiny_model_dir, tiny_adapters):
    """One model holding two named adapters, requests of both (and of the bare model) mixed in one
    `complete` call: each gives what a model with only its adapter (or none) gives."""
    from seqpo.requests import NO_ADAPTER
    from seqpo.model import load_model, load_model_adapters

    multi = load_model_adapters(str(tiny_model_dir), {k: str(v) for k, v in tiny_adapters.items()})
    prefix = "Translate from English to German in a streaming style:\nEnglish: hello\nGerman: Hallo\n\n"
    prompts = ["English: The weather\nGerman:", "English: Our team released\nGerman: Unser"]
    names = ["en-zh", "en-de", NO_ADAPTER]  # en-de is active after loading: en-zh first switches it
    reqs = [Request(prefix, p, max_new_tokens=10, unit="word", adapter=name) for name in names for p in prompts]
    gen = Generator(multi.model, multi.tokenizer, batch_size=4)
    got = gen.complete(reqs)
    again = gen.complete(list(reversed(reqs)))[::-1]  # other order: cached prefixes per adapter
    expected = {}
    for name in names:
        single = load_model(str(tiny_model_dir), None if name == NO_ADAPTER else str(tiny_adapters[name]))
        outs = Generator(single.model, single.tokenizer, batch_size=4).complete(
            [Request(prefix, p, max_new_tokens=10, unit="word") for p in prompts])
        expected[name] = [c.text for c in outs]
    assert [c.text for c in got] == [t for name in names for t in expected[name]]
    assert [c.text for c in again] == [c.text for c in got]
    assert len({tuple(v) for v in expected.values()}) == 3  # the adapters really change the output
    # a request without an adapter runs on the active one; a plain model refuses a named adapter
    multi.model.set_adapter("en-de")
    assert gen.complete([Request(prefix, prompts[0], max_new_tokens=10, unit="word")])[0].text == expected["en-de"][0]
    bare = load_model(str(tiny_model_dir))
    with pytest.raises(ValueError, match="without adapters"):
        Generator(bare.model, bare.tokenizer).complete([Request(prefix, prompts[0], adapter="en-de")])
