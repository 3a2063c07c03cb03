"""Streaming engine: append equals re-encoding its transcript (same greedy tokens); slots runs
exactly the training format of `seqpo.slots`; forks share state; every mode drives episodes."""

import pytest
import torch
from transformers import DynamicCache

from seqpo.engine import SourceRegionFullError, engine_for
from seqpo.generation import Generator
from seqpo.requests import Request
from seqpo.languages import parse_pair
from seqpo.policies import LLMPolicy, WaitKPolicy
from seqpo.simulate import run_episodes
from seqpo.slots import DEAD, slots_episode

PAIR = parse_pair("en-de")
SOURCES = [["The", "weather", "is", "nice", "today."], ["Our", "team"]]
# what the driver writes after each read: the model's own text (kept in the cache), a wait (its
# output rolled back) or text the model never produced (appended as new tokens)
SCRIPT = ["", None, "Hallo", None, ""]


def drive(engine, on_generate=None):
    """Scripted episodes of different lengths through one batched engine; returns per-episode
    (first generated token, written) per step."""
    states = [engine.open(PAIR, r) for r in SOURCES]
    log = [[] for _ in SOURCES]
    for t in range(max(map(len, SOURCES))):
        act = [i for i, r in enumerate(SOURCES) if t < len(r)]
        for i in act:
            engine.read(states[i], SOURCES[i][t], last=t == len(SOURCES[i]) - 1)
        if on_generate:
            on_generate([states[i] for i in act])
        comps = engine.generate([states[i] for i in act], [Request("", "", 5, unit="word") for _ in act])
        for i, c in zip(act, comps):
            written = c.text.strip() if SCRIPT[t] is None else SCRIPT[t]
            log[i].append((c, written))
            engine.write(states[i], written)
    return states, log


def test_append_equals_reencoding_the_transcript(tiny_loaded):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    engine = engine_for(model, tok, mode="append")
    expected = []

    def reencode(states):
        # the transcript a re-encode would see: live cache entries in position order + pending ids
        for s in states:
            ids = [i for i, _, _, _ in sorted(engine.context(s), key=lambda e: e[2])] + [p[0] for p in s.pending]
            x = torch.tensor([ids])
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=5,
                                 do_sample=False, pad_token_id=tok.pad_token_id, cache=DynamicCache(config=model.config))
            expected.append(tok.decode(out[0, x.shape[1]:], skip_special_tokens=True))

    _, log = drive(engine, reencode)
    # drive() runs the episodes step by step, interleaved; the same order as `expected`
    order = [per[t][0] for t in range(5) for per in log if t < len(per)]
    assert len(order) == len(expected) == 7
    for c, text in zip(order, expected):
        assert c.text == text.split("\n")[0]
    assert engine.tags.shape[1] == 2  # both episodes still open, one batched cache


def test_slots_engine_runs_the_training_format(tiny_loaded):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    engine = engine_for(model, tok, mode="slots", slot=4)
    states, log = drive(engine)
    for state, reads, steps in zip(states, SOURCES, log):
        ep = slots_episode(tok, PAIR, reads, [w for _, w in steps], slot=4)
        live = sorted((int(i), int(k), int(p), int(v)) for i, k, p, v
                      in zip(ep.input_ids, ep.kind, ep.position_ids, ep.vis) if k != DEAD)
        # cache bookkeeping: what the engine holds (+ what it will run next) is the training sequence
        assert sorted(engine.context(state) + state.pending) == live
        # and the model sees the same thing: each step's first token from one full forward
        window = slots_episode(tok, PAIR, reads, [w for _, w in steps], slot=4, window=model.config.sliding_window)
        add = lambda m: torch.where(m, 0.0, torch.finfo(torch.float32).min)[None, None]
        with torch.inference_mode():
            logits = model(input_ids=ep.input_ids[None], position_ids=ep.position_ids[None],
                           attention_mask={"full_attention": add(ep.attention_mask),
                                           "sliding_attention": add(window.attention_mask)}).logits[0]
        firsts = logits[ep.step_starts].argmax(-1).tolist()
        assert firsts == [c.token_ids[0] for c, _ in steps]


def test_slots_region_overflow_is_an_error(tiny_loaded):
    engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode="slots", slot=2)
    s = engine.open(PAIR, ["a"])
    engine.read(s, "a")
    with pytest.raises(SourceRegionFullError):
        engine.read(s, "much longer text than the region holds")


@pytest.mark.parametrize("mode", ["reencode", "cached", "append", "slots"])
def test_modes_drive_episodes_and_forks_match_single_runs(tiny_loaded, mode):
    engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode=mode)
    sources = [(0, "The weather is nice today."), (1, ""), (2, "Our team released it.")]
    single = run_episodes(sources, WaitKPolicy(k=2), engine, PAIR, chunk=1)
    assert [len(e.steps) for e in single] == [5, 0, 4]
    assert single[0].steps[0].written == ""
    if mode != "reencode":
        assert engine.rows == [] and getattr(engine, "tags", None) is None  # every episode closed its row
    grouped = run_episodes(sources, WaitKPolicy(k=2), engine, PAIR, chunk=1, group=3)
    assert len(grouped) == 9
    for i, ep in enumerate(grouped):  # greedy forks decode exactly what one episode does
        assert ep.prediction == single[i // 3].prediction


def test_plain_generator_is_the_reencode_mode(tiny_loaded):
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode="reencode")
    a = run_episodes([(0, "one two three")], LLMPolicy(), gen, PAIR, chunk=1)[0]
    b = run_episodes([(0, "one two three")], LLMPolicy(), engine, PAIR, chunk=1)[0]
    assert a.prediction == b.prediction and len(a.steps) == 3


def test_append_reuses_the_cache(tiny_loaded):
    """Per step, append runs only new tokens; re-encode runs the whole step prompt again."""
    counts = {}
    for mode in ("reencode", "append"):
        engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode=mode)
        run_episodes([(0, "The weather is nice today. I would like a cup of tea, please.")],
                     LLMPolicy(max_step_tokens=3), engine, PAIR, chunk=1)
        counts[mode] = engine.tokens_processed
    assert counts["append"] < counts["reencode"]


def test_must_write_applies_in_every_decoding_mode(tiny_loaded):
    """The last step may not end the line first, in the engine's own decode loop too."""
    from seqpo.engine import engine_for
    from seqpo.requests import Request
    from seqpo.languages import parse_pair

    pair = parse_pair("en-de")
    nl = tiny_loaded.tokenizer("\n", add_special_tokens=False).input_ids

    def favour_newline(_module, _inputs, logits):
        logits[..., nl] += 100.0
        return logits

    hook = tiny_loaded.model.lm_head.register_forward_hook(favour_newline)
    try:
        for mode in ("append", "slots"):
            engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode=mode, few_shot=False)
            free, forced = engine.open(pair, ["Das", "Haus"]), engine.open(pair, ["Das", "Haus"])
            for state in (free, forced):
                engine.read(state, "Das", last=False)
            a, b = engine.generate([free, forced], [Request("", "", max_new_tokens=3),
                                                    Request("", "", max_new_tokens=3, must_write=True)])
            assert a.new_tokens == 1 and a.text == "", mode
            assert b.new_tokens >= 2, mode
    finally:
        hook.remove()


def test_the_registry_names_the_modes_and_asks_their_classes():
    """Mode names live in `engine.ENGINES` only; what a mode can do comes from its class."""
    from seqpo.engine import MODES, engine_class, modes_where
    from seqpo.model_steps import ModelSteps

    assert all(issubclass(engine_class(mode), ModelSteps) for mode in MODES)
    assert modes_where(incremental=False) == ("reencode", "cached")  # re-translation can run on these
    assert modes_where(reserves_source=True) == ("slots",)
    assert modes_where(keeps_cache=False) == ("reencode",)
    with pytest.raises(ValueError, match="unknown decoding mode 'beam'"):
        engine_class("beam")
