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
