"""Look-ahead of waits (append and slots): several reads' decisions from one forward pass give
exactly the episodes that stepping read by read gives, with fewer passes."""

import pytest
import torch

from seqpo.engine import engine_for
from seqpo.languages import parse_pair
from seqpo.policies import LLMPolicy
from seqpo.simulate import run_episodes

PAIR = parse_pair("en-de")
SOURCES = [(0, "The weather is nice today and we will go for a long walk."), (1, "Our team released it."),
           (2, "A"), (3, "Please send me the report by Friday, or call me tomorrow morning.")]


FEATURE = {"append": 5, "slots": 2}  # hidden features that mix waits and mid-sentence writes on the tiny model


@pytest.fixture
def hesitant(tiny_loaded, request):
    """The tiny model made to wait at about half the reads: the newline's logit is raised where a
    feature of the hidden state is positive (a function of the context, as a real policy's is);
    elsewhere it writes " the", one token per word like a real vocabulary."""
    tok = tiny_loaded.tokenizer
    nl, word = tok("\n", add_special_tokens=False).input_ids[-1], tok(" the", add_special_tokens=False).input_ids
    assert len(word) == 1  # a whole word in one token: what the model writes is what the text re-tokenizes to
    head = tiny_loaded.model.get_output_embeddings()
    k = FEATURE[getattr(request, "param", "append")]

    def bias(_module, inputs, logits):
        one_hot = lambda i: torch.nn.functional.one_hot(torch.tensor(i), logits.shape[-1]).to(logits.dtype)
        return logits + 60.0 * (inputs[0][..., k:k + 1] > 0) * one_hot(nl) + 30.0 * one_hot(word[0])

    hook = head.register_forward_hook(bias)
    yield tiny_loaded
    hook.remove()


def _count_passes(engine):
    calls = [0]
    inner = engine.model.forward

    def counted(*a, **k):
        calls[0] += 1
        return inner(*a, **k)

    engine.model.forward = counted
    return calls


def _run(loaded, mode, lookahead=0, write_ahead=False, width=3):
    engine = engine_for(loaded.model, loaded.tokenizer, mode=mode, slot=4, lookahead=lookahead,
                        write_ahead=write_ahead)
    calls = _count_passes(engine)
    try:
        episodes = run_episodes(SOURCES, LLMPolicy(max_step_tokens=6, max_lead=50), engine, PAIR, chunk=1,
                                width=width)
    finally:
        del engine.model.forward
    assert engine.rows == [] and engine.tags is None and not engine.jobs  # every row closed
    return episodes, calls[0]


def _same(a_eps, b_eps):
    for a, b in zip(a_eps, b_eps):
        assert a.prediction == b.prediction
        assert [(s.read, s.written, s.finished, s.chunk) for s in a.steps] == \
               [(s.read, s.written, s.finished, s.chunk) for s in b.steps]


@pytest.mark.parametrize("hesitant,mode", [("append", "append"), ("slots", "slots")], indirect=["hesitant"])
@pytest.mark.parametrize("width", [1, 3])
def test_lookahead_and_write_ahead_give_the_same_episodes_in_fewer_passes(hesitant, mode, width):
    plain, plain_calls = _run(hesitant, mode, width=width)
    steps = [s for e in plain for s in e.steps if not s.finished]
    waits = sum(not s.written for s in steps) / len(steps)
    # the test means something only if the model both waits and writes before the last read
    assert 0.3 < waits < 0.9 and sum(bool(s.written) for s in steps) >= 3, waits
    for lookahead, write_ahead in ((8, False), (0, True), (8, True)):
        episodes, calls = _run(hesitant, mode, lookahead, write_ahead, width=width)
        _same(plain, episodes)
        assert calls < plain_calls, (lookahead, write_ahead)


def test_lookahead_with_forks_and_sampling_runs(hesitant):
    engine = engine_for(hesitant.model, hesitant.tokenizer, mode="append", lookahead=4, write_ahead=True,
                        do_sample=True)
    torch.manual_seed(0)
    episodes = run_episodes(SOURCES[:2], LLMPolicy(max_step_tokens=4), engine, PAIR, chunk=1, group=3)
    assert len(episodes) == 6
    assert all(len(e.steps) == len(e.source.split()) for e in episodes)
    assert engine.rows == []
