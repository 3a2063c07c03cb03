"""Batched generation with a cached prefix must give the same greedy tokens as plain generation."""

import torch

from seqpo.generation import Generator, Request


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
