"""GRPO pieces: rollouts keep what training needs, the token loss by hand, batching layout."""

import math

import pytest
import torch

from seqpo.generation import Generator
from seqpo.requests import Request
from seqpo.languages import parse_pair
from seqpo.policies.llm import LLMPolicy
from seqpo.rl.grpo import completion_logprobs, flatten, grpo_token_loss, make_batches
from seqpo.rl.rollout import Rollout, StepSample, sample_rollouts, score_rollouts
from seqpo.rl.train import step_items
from seqpo.stream import Episode, Step

EN_ZH = parse_pair("en-zh")


def test_recorded_logprobs_match_a_teacher_forced_pass(tiny_loaded):
    """The log-probs recorded while sampling are those of the model's own forward on the same ids."""
    torch.manual_seed(3)
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, do_sample=True, temperature=1.0)
    reqs = [Request("", "Translate from English to Chinese in a streaming style:\nEnglish: hello\nChinese:",
                    max_new_tokens=6, stop_at_newline=False),
            Request("", "The weather is nice", max_new_tokens=4, stop_at_newline=False)]
    comps = gen.complete(reqs)
    assert all(len(c.logprobs) == len(c.token_ids) > 0 for c in comps)
    assert comps[0].prompt_ids == gen.prompt_ids(reqs[0])
    rows = [(c.prompt_ids, c.token_ids, c.logprobs, 0.0) for c in comps]
    for batch in make_batches(rows, tiny_loaded.tokenizer.pad_token_id, max_rows=8):
        with torch.no_grad():
            forced = completion_logprobs(tiny_loaded.model, batch, "cpu")
        m = batch.completion_mask.bool()
        assert torch.allclose(forced[m], batch.old_logps[m], atol=1e-4)


def test_rollouts_form_groups_with_step_samples(tiny_loaded):
    torch.manual_seed(0)
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, batch_size=16, do_sample=True)
    items = [(4, "The weather is nice today.", "今天天气很好。"), (9, "Our team released it.", "我们团队发布了。")]
    groups = sample_rollouts(gen, LLMPolicy(max_step_tokens=8, few_shot=False), EN_ZH, 2, items, group=3)
    assert [len(g) for g in groups] == [3, 3]
    assert [g[0].source_index for g in groups] == [4, 9]
    for group in groups:
        assert len({id(r.episode) for r in group}) == 3  # three separate episodes
        for r in group:
            assert r.episode.steps[-1].finished
            for s in r.samples:
                assert 0 <= s.step < len(r.episode.steps)
                assert len(s.token_ids) == len(s.logprobs) > 0
                assert all(lp <= 0 for lp in s.logprobs)
    with pytest.raises(ValueError):
        sample_rollouts(Generator(tiny_loaded.model, tiny_loaded.tokenizer), LLMPolicy(), EN_ZH, 1, items, 2)


def test_scores_of_an_empty_episode_lag_the_whole_source():
    ep = Episode("a b c d", "word", "char", [Step(2, ""), Step(4, "", finished=True)])
    written = Episode("a b c d", "word", "char", [Step(2, "你好"), Step(4, "世界", finished=True)])
    scores = score_rollouts([Rollout(0, "你好世界", ep), Rollout(0, "你好世界", written)], "zh")
    assert scores[0].quality == 0.0 and scores[0].latency == 4.0 and scores[0].wait_fraction == 1.0
    assert scores[1].quality == pytest.approx(100.0)
    # delays 2,2,4,4, 4 source words, 4 reference characters (rate 1): AL sums up to the first
    # unit written after the whole source (SimulEval's tau): mean(2-0, 2-1, 4-2) = 5/3
    assert scores[1].latency == pytest.approx(5 / 3)


def test_token_loss_by_hand():
    logps = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.0]]).clamp(min=1e-9))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    # on-policy (old = current): ratio 1, loss = -(sum of token advantages) / tokens = -(1 + 1 - 2) / 3
    loss, stats = grpo_token_loss(logps, logps, None, adv, mask, 0.2, 0.0, total_tokens=3)
    assert float(loss) == pytest.approx(0.0)
    loss, _ = grpo_token_loss(logps, logps, None, adv, mask, 0.2, 0.0, total_tokens=4)
    assert float(loss) == pytest.approx(0.0)
    # ratio 2 on the first row (positive advantage) is clipped at 1.2; ratio 0.5 on the second row
    # (negative advantage) is clipped at 0.8: min(0.5*-2, 0.8*-2) = -1.6
    old = logps - torch.log(torch.tensor([[2.0, 2.0], [0.5, 1.0]]))
    loss, stats = grpo_token_loss(logps, old, None, adv, mask, 0.2, 0.0, total_tokens=3)
    assert float(loss) == pytest.approx(-(1.2 + 1.2 - 1.6) / 3)
    assert stats["clipped_sum"] == 3
    # k3 KL: ref = logp + log 2 -> exp(log2) - log2 - 1 per token
    ref = logps + math.log(2)
    loss_kl, stats = grpo_token_loss(logps, logps, ref, adv, mask, 0.2, 0.1, total_tokens=3)
    k3 = 2 - math.log(2) - 1
    assert stats["kl_sum"] == pytest.approx(3 * k3, rel=1e-5)
    assert float(loss_kl) == pytest.approx(0.1 * k3, rel=1e-5)


def test_batches_put_every_completion_in_the_last_columns():
    rows = [([1, 5, 6], [7, 8], [-0.1, -0.2], 1.0), ([1, 9], [4], [-0.3], -1.0)]
    (b,) = make_batches(rows, pad_id=0, max_rows=4)
    # sorted by completion length: the one-token completion first
    assert b.input_ids.tolist() == [[0, 1, 9, 4, 0], [1, 5, 6, 7, 8]]
    assert b.attention_mask.tolist() == [[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert b.position_ids.tolist()[0][1:4] == [0, 1, 2]
    assert b.completion_mask.tolist() == [[1, 0], [1, 1]]
    assert b.advantages.tolist() == [-1.0, 1.0]
    assert b.tokens == 3


def test_flatten_shares_the_episode_advantage_across_its_steps():
    ep = Episode("a b", "word", "char", [Step(1, ""), Step(2, "x", finished=True)])
    r = Rollout(0, "x", ep, [StepSample(0, [1], [3], [-1.0]), StepSample(1, [1, 2], [4, 5], [-1.0, -2.0])])
    assert [row[3] for row in flatten([r], [0.7])] == [0.7, 0.7]


def test_step_items_walk_seeded_epochs():
    seen = [step_items(5, s, 2, seed=1) for s in range(5)]
    flat = [i for s in seen for i in s]
    assert sorted(flat[:5]) == [0, 1, 2, 3, 4]  # the first epoch covers every sentence once
    assert sorted(flat[5:10]) == [0, 1, 2, 3, 4]
    assert step_items(5, 3, 2, seed=1) == seen[3]  # a pure function of the step (resume)
