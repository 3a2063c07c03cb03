"""Live sentences on the streaming engine: an episode opened with a maximum source length, streams
that queue their calls until a flush, and live runs equal to `run_episodes` of the same mode."""

import pytest

from seqpo.engine import SourceRegionFullError, engine_for
from seqpo.languages import parse_pair
from seqpo.live_engines import TOKENS_PER_UNIT, EngineSet, source_token_budget
from seqpo.policies import make_policy
from seqpo.driver import EpisodeRun, step_due
from seqpo.model_steps import CompleterSteps
from seqpo.simulate import run_episodes
from seqpo.slots import region_size

PAIR = parse_pair("en-de")
SENTENCE = "The weather is nice today and we would like a cup of tea."


def test_open_with_max_source_tokens_reserves_the_region(tiny_loaded):
    engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode="slots", slot=4)
    live = engine.open(PAIR, max_source_tokens=10)
    known = engine.open(PAIR, ["a", "b"])
    P = live.next_pos
    assert live.region_end == P + region_size(10, 4) == P + 12
    assert known.region_end == P + 4  # sized to its reads, as before
    engine.read(live, "one two three")
    with pytest.raises(SourceRegionFullError):
        engine.read(live, "and a long tail of words that no longer fits in twelve positions")
    with pytest.raises(ValueError, match="either its reads or max_source_tokens"):
        engine.open(PAIR)
    assert source_token_budget(30) == 30 * TOKENS_PER_UNIT


def speak_live(engines, stream, policy, sentence: str, max_units: int = 30):
    """The sentence fed word by word (the last word completed by the end), stepping as it arrives."""
    live = EpisodeRun(PAIR, policy, chunk=1, max_units=max_units, model=CompleterSteps(engines), row=stream)
    words = sentence.split()
    steps = []
    for i, word in enumerate(words):
        live.feed(word + (" " if i < len(words) - 1 else ""))
        if i == len(words) - 1:
            live.end()
        steps += list(step_due(live))
    return live.episode, steps


@pytest.mark.parametrize("mode, policy", [("append", "llm"), ("append", "wait-k"), ("slots", "llm"),
                                          ("slots", "wait-k"), ("cached", "llm")])
def test_live_run_equals_run_episodes(tiny_loaded, mode, policy):
    # slots: one 128-token slot holds both the live reserve (30 words x 4 tokens) and the
    # sentence's own tokens, so both runs put the target at the same positions
    slot = 128
    offline = run_episodes([(0, SENTENCE)], make_policy(policy, k=2), engine_for(
        tiny_loaded.model, tiny_loaded.tokenizer, mode, slot), PAIR, chunk=1)[0]
    engines = EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, mode, slot)
    stream = engines.open_row(PAIR, max_units=30)
    episode, steps = speak_live(engines, stream, make_policy(policy, k=2), SENTENCE)
    assert [(s.read, s.written) for s in steps] == [(s.read, s.written) for s in offline.steps]
    assert episode.prediction == offline.prediction and episode.prediction
    engine = engines.engines[(PAIR, None, True)]
    assert engine.rows == [stream.state]
    engines.release(stream)
    assert stream.state is not None  # queued, not applied: flushes happen on the model thread
    engines.flush()
    assert engine.rows == [] and stream.closed and engines.open_rows == 0


def test_streams_queue_calls_until_a_flush(tiny_loaded):
    engines = EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, "append")
    a, b = engines.open_row(PAIR), engines.open_row(parse_pair("en-zh"), few_shot=False)
    engines.read(a, "The", last=False)
    engines.write(a, "")
    engines.read(b, "The", last=False)
    assert engines.engines == {} and list(a.todo) == [("read", "The", False), ("write", "")]
    engines.flush()
    assert not a.todo and not b.todo
    # one engine per (pair, adapter, few-shot): an engine serves one pair
    assert set(engines.engines) == {(PAIR, None, True), (parse_pair("en-zh"), None, False)}
    assert engines.engines[(PAIR, None, True)].rows == [a.state]


def test_region_overflow_fails_only_its_stream(tiny_loaded):
    engines = EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, "slots", slot=4)
    small, fine = engines.open_row(PAIR, max_units=1), engines.open_row(PAIR, max_units=30)
    for stream in (small, fine):
        engines.read(stream, "The weather is nice today and we would like", last=False)
    from seqpo.requests import Request

    out = engines.complete_each([Request("", "", 3), Request("", "", 3)], [small, fine])
    assert isinstance(out[0], SourceRegionFullError) and small.closed and small.state is None
    assert out[1].new_tokens >= 1
    assert engines.engines[(PAIR, None, True)].rows == [fine.state]
    with pytest.raises(SourceRegionFullError):
        engines.complete([Request("", "", 3)], [small])


def test_slots_stream_needs_a_maximum_length(tiny_loaded):
    engines = EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, "slots")
    with pytest.raises(ValueError, match="max_units"):
        engines.open_row(PAIR)
    with pytest.raises(ValueError, match="append or slots"):
        EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, "reencode")


@pytest.mark.parametrize("mode", ["append", "slots"])
def test_server_worker_batches_continuously(tiny_loaded, mode):
    """A one-token step that runs next to a long one comes back after its own pass, not after the
    long step (continuous batching in the server's worker)."""
    import asyncio

    from seqpo.generation import Generator
    from seqpo.requests import Request
    from seqpo.serve.worker import ModelWorker

    engines = EngineSet(tiny_loaded.model, tiny_loaded.tokenizer, mode)
    passes = [0]
    hook = tiny_loaded.model.get_decoder().register_forward_pre_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))

    async def main():
        worker = ModelWorker(Generator(tiny_loaded.model, tiny_loaded.tokenizer), engines=engines)
        worker.start()
        streams = {name: engines.open_row(PAIR, max_units=30) for name in ("long", "short")}
        for stream in streams.values():
            engines.read(stream, "Hello", last=False)
        seen = {}

        async def step(name, tokens):
            done = await worker.submit(name, Request("", "", max_new_tokens=tokens, stop_at_newline=False), streams[name])
            seen[name] = (passes[0], done.new_tokens)

        await asyncio.gather(step("long", 12), step("short", 1))
        for stream in streams.values():
            worker.release(stream)
        await asyncio.sleep(0.2)  # the worker frees the rows
        await worker.stop()
        return seen

    try:
        seen = asyncio.run(main())
    finally:
        hook.remove()
    assert seen["short"][1] == 1 and seen["long"][1] > 1
    assert seen["short"][0] < seen["long"][0]  # resolved passes before the long step ended
    assert engines.open_rows == 0
