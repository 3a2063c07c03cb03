"""Look-ahead of waits (append and slots): several reads' decisions from one forward pass give
exactly the episodes that stepping read by read gives, with fewer passes."""

import pytest
import torch

from seqpo.engine import StreamingEngine
from seqpo.languages import parse_pair
from seqpo.policies import LLMPolicy
from seqpo.simulate import run_episodes

PAIR = parse_pair("en-de")
SOURCES = [(0, "The weather is nice today and we will go for a long walk."), (1, "Our team released it."),
           (2, "A"), (3, "Please send me the report by Friday, or call me tomorrow morning.")]


@pytest.fixture
def hesitant(tiny_loaded):
    """The tiny model made to wait at about half the reads: the newline's logit is raised where a
    feature of the hidden state is positive (a function of the context, as a real policy's is)."""
    nl = tiny_loaded.tokenizer("\n", add_special_tokens=False).input_ids
    head = tiny_loaded.model.get_output_embeddings()

    def bias(_module, inputs, logits):
        return logits + 60.0 * (inputs[0][..., :1] > 0) * torch.nn.functional.one_hot(
            torch.tensor(nl[-1]), logits.shape[-1]).to(logits.dtype)

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


@pytest.mark.parametrize("mode", ["append", "slots"])
def test_lookahead_gives_the_same_episodes_in_fewer_passes(hesitant, mode):
    runs = {}
    for lookahead in (0, 8):
        engine = StreamingEngine(hesitant.model, hesitant.tokenizer, mode=mode, slot=4, lookahead=lookahead)
        calls = _count_passes(engine)
        try:
            episodes = run_episodes(SOURCES, LLMPolicy(max_step_tokens=4), engine, PAIR, chunk=1, width=3)
        finally:
            del engine.model.forward
        assert engine.rows == [] and engine.tags is None  # every row closed
        runs[lookahead] = (episodes, calls[0])
    (plain, plain_calls), (ahead, ahead_calls) = runs[0], runs[8]
    steps = [s for e in plain for s in e.steps]
    waits = sum(not s.written for s in steps) / len(steps)
    assert 0.3 < waits < 0.95, waits  # the test means something only if the model both waits and writes
    for a, b in zip(plain, ahead):
        assert a.prediction == b.prediction
        assert [(s.read, s.written, s.finished, s.chunk) for s in a.steps] == \
               [(s.read, s.written, s.finished, s.chunk) for s in b.steps]
    assert ahead_calls < plain_calls


def test_lookahead_with_forks_and_sampling_runs(hesitant):
    engine = StreamingEngine(hesitant.model, hesitant.tokenizer, mode="append", lookahead=4, do_sample=True)
    torch.manual_seed(0)
    episodes = run_episodes(SOURCES[:2], LLMPolicy(max_step_tokens=4), engine, PAIR, chunk=1, group=3)
    assert len(episodes) == 6
    assert all(len(e.steps) == len(e.source.split()) for e in episodes)
    assert engine.rows == []
