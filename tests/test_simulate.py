from seqpo.generation import Generator
from seqpo.languages import parse_pair
from seqpo.policies import LLMPolicy, OfflinePolicy, WaitKPolicy
from seqpo.simulate import run_episodes


def test_lockstep_episodes_on_tiny_model(tiny_loaded):
    pair = parse_pair("en-zh")
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, batch_size=4)
    sources = ["The weather is nice today.", "", "I would like a cup of tea, please."]
    seen = []
    eps = run_episodes(list(enumerate(sources)), WaitKPolicy(k=2), gen, pair, chunk=1,
                       on_done=lambda k, e: seen.append(k))
    assert sorted(seen) == [0, 1, 2]
    assert eps[1].prediction == "" and eps[1].steps == []
    for ep, src in ((eps[0], sources[0]), (eps[2], sources[2])):
        assert [s.read for s in ep.steps] == list(range(1, len(src.split()) + 1))
        assert ep.steps[0].written == ""  # wait-2 waits at the first read
        assert ep.steps[-1].finished
        d = ep.delays()
        assert d == sorted(d) and all(1 <= x <= ep.source_length for x in d)


def test_chunked_reads_and_offline_delays(tiny_loaded):
    pair = parse_pair("en-de")
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    ep = run_episodes([(0, "a b c d e")], OfflinePolicy(), gen, pair, chunk=2)[0]
    assert [s.read for s in ep.steps] == [2, 4, 5]
    assert set(ep.delays()) <= {5}


def test_llm_policy_runs_without_few_shot(tiny_loaded):
    pair = parse_pair("en-de")
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    ep = run_episodes([(0, "one two three")], LLMPolicy(few_shot=False), gen, pair, chunk=1)[0]
    assert len(ep.steps) == 3 and ep.steps[-1].finished
