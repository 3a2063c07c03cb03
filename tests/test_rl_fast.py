"""The fast training loop computes what the original one does: prefix-cached rollouts give the
re-encode decoding's output, and the prefix-tree update scores every sampled token with the
log-prob recorded when it was sampled (and with the padded-row update's log-prob)."""

import pytest
import torch

from seqpo.engine import engine_for
from seqpo.generation import line_end_ids
from seqpo.languages import parse_pair
from seqpo.policies.llm import LLMPolicy
from seqpo.rl.grpo import completion_logprobs, flatten, make_batches, make_trees, tree_logprobs
from seqpo.rl.rollout import sample_rollouts
from seqpo.simulate import run_episodes
from seqpo.slots import sliding_window

EN_ZH = parse_pair("en-zh")
SOURCES = ["The weather is nice today.", "Our team released the new version of the software last week.",
           "I would like a cup of tea."]
ITEMS = [(i, s, "") for i, s in enumerate(SOURCES)]


def _rollouts(loaded, temperature=0.8, seed=0, group=4):
    torch.manual_seed(seed)
    engine = engine_for(loaded.model, loaded.tokenizer, mode="cached", batch_size=16, do_sample=True,
                        temperature=temperature, few_shot=False)
    groups = sample_rollouts(engine, LLMPolicy(max_step_tokens=6, few_shot=False), EN_ZH, 1, ITEMS, group)
    return [r for g in groups for r in g], engine


@pytest.mark.parametrize("few_shot", [False, True])
def test_cached_decoding_equals_reencoding_with_fewer_tokens(tiny_loaded, few_shot):
    policy = LLMPolicy(max_step_tokens=6, few_shot=few_shot)
    runs = {}
    for mode in ("reencode", "cached"):
        # re-encoding one request at a time: `generate` applies the sliding window (64 tokens in the tiny
        # model; the few-shot prompts are longer) by cache index, which left padding would shift
        engine = engine_for(tiny_loaded.model, tiny_loaded.tokenizer, mode=mode,
                            batch_size=1 if mode == "reencode" else 4, few_shot=few_shot)
        eps = run_episodes(list(enumerate(SOURCES)), policy, engine, EN_ZH, 1, width=3)
        runs[mode] = ([[(s.read, s.written) for s in e.steps] for e in eps], engine.tokens_processed)
    assert runs["cached"][0] == runs["reencode"][0]
    assert any(w for steps in runs["cached"][0] for _, w in steps)  # the episodes write something
    if not few_shot:  # (with examples, re-encoding keeps their KV once; a cached row runs them itself)
        assert runs["cached"][1] < 0.7 * runs["reencode"][1]  # only what the last prompt did not share


def test_tree_update_scores_each_token_as_it_was_sampled(tiny_loaded):
    rollouts, _ = _rollouts(tiny_loaded)
    rows = flatten(rollouts, [float(i) for i in range(len(rollouts))])
    assert any(r[4] for r in rows) and not all(r[4] for r in rows)  # last steps (must write) and others
    sampled_tokens = sum(len(r[1]) for r in rows)
    trees = make_trees(rows, max_nodes=256)
    assert len(trees) > 1 and sum(t.tokens for t in trees) == sampled_tokens
    assert sum(t.nodes for t in trees) < sum(len(r[0]) + len(r[1]) for r in rows) / 2  # shared tokens run once
    model, window, line_end = tiny_loaded.model, sliding_window(tiny_loaded.model), line_end_ids(tiny_loaded.tokenizer)
    for tree in trees:
        with torch.no_grad():
            logps = tree_logprobs(model, tree, torch.device("cpu"), window, temperature=0.8, line_end=line_end)
        assert torch.allclose(logps, tree.old_logps, atol=1e-4), float((logps - tree.old_logps).abs().max())
    # the original padded-row update scores the same tokens alike (rows without the must-write ban)
    free = [r for r in rows if not r[4]]
    forced = []
    for batch in make_batches(free, tiny_loaded.tokenizer.pad_token_id, max_rows=8):
        with torch.no_grad():
            lp = completion_logprobs(model, batch, "cpu", temperature=0.8)
        forced.append(lp[batch.completion_mask.bool()])
    assert torch.allclose(torch.cat(forced).sort().values,
                          torch.tensor([x for r in free for x in r[2]]).sort().values, atol=1e-4)


def test_tree_and_rows_give_the_same_gradient(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from seqpo.model import load_model

    loaded = load_model(str(tiny_model_dir))
    model = get_peft_model(loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
    rollouts, _ = _rollouts(loaded, temperature=1.0, seed=1, group=3)
    rows = [r for r in flatten(rollouts, [(-1.0) ** i * (1 + i / 10) for i in range(len(rollouts))]) if not r[4]]
    grads = {}
    for name in ("tree", "rows"):
        model.zero_grad()
        if name == "tree":
            for tree in make_trees(rows, max_nodes=300):
                lp = tree_logprobs(model, tree, torch.device("cpu"), sliding_window(model))
                (-(lp * tree.advantages).sum()).backward()
        else:
            for batch in make_batches(rows, loaded.tokenizer.pad_token_id, max_rows=5):
                lp = completion_logprobs(model, batch, "cpu")
                (-(lp * batch.advantages[:, None] * batch.completion_mask).sum()).backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert grads["tree"].abs().max() > 0
    assert torch.allclose(grads["tree"], grads["rows"], atol=1e-5, rtol=1e-4)


def test_a_tree_shares_prefixes_between_samples():
    rows = [([1, 2, 3], [4, 5], [-0.1, -0.2], 1.0, False), ([1, 2, 3], [4, 6], [-0.1, -0.3], -1.0, False),
            ([1, 2, 7], [8], [-0.4], 0.5, True)]
    (tree,) = make_trees(rows, max_nodes=100)
    assert tree.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert tree.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 2, 3]]
    assert tree.mask[0, 5].tolist() == [True, True, True, True, False, True, False, False]  # 6 sees 1 2 3 4 and itself
    assert tree.tokens == 5 and len(tree.targets) == 4  # token 4 is scored once for both samples
    assert tree.term_target.tolist() == [0, 1, 0, 2, 3]
    assert tree.must_write.tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="no prompt"):
        make_trees([([], [1], [0.0], 1.0, False)])
