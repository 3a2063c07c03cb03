"""`seqpo train` in the append and slots formats: rollouts on the zero-recompute engine, and an
update over one sequence per episode (the transcript the engine recorded) that scores every
sampled token with the log-prob it was sampled with."""

import pytest
import torch

from seqpo.engine import engine_for
from seqpo.engine.transcript import ALIVE
from seqpo.generation import line_end_ids
from seqpo.languages import parse_pair
from seqpo.policies.llm import LLMPolicy
from seqpo.rl.grpo import transcript_batches, tree_logprobs
from seqpo.rl.rollout import sample_rollouts
from seqpo.slots import sliding_window

EN_ZH = parse_pair("en-zh")
SOURCES = ["The weather is nice today.", "Our team released the new version of the software last week.",
           "I would like a cup of tea."]
ITEMS = [(i, s, "") for i, s in enumerate(SOURCES)]


def _rollouts(loaded, mode, few_shot, temperature=0.8, group=3):
    torch.manual_seed(0)
    engine = engine_for(loaded.model, loaded.tokenizer, mode=mode, batch_size=16, do_sample=True,
                        temperature=temperature, few_shot=few_shot)
    engine.record = True
    groups = sample_rollouts(engine, LLMPolicy(max_step_tokens=6, few_shot=few_shot), EN_ZH, 1, ITEMS, group)
    return [r for g in groups for r in g]


@pytest.mark.parametrize("mode,few_shot", [("append", False), ("slots", False), ("slots", True)])
def test_transcript_update_scores_each_token_as_it_was_sampled(tiny_loaded, mode, few_shot):
    rollouts = _rollouts(tiny_loaded, mode, few_shot)
    for r in rollouts:  # the transcript holds every token the episode sampled, in order
        assert [p.token for p in r.transcript.picks] == [t for s in r.samples for t in s.token_ids]
        assert [p.logp for p in r.transcript.picks] == [lp for s in r.samples for lp in s.logprobs]
    picks = [p for r in rollouts for p in r.transcript.picks]
    # rolled-back tokens and superseded re-fed copies died: later entries must not see them
    assert any(d != ALIVE for r in rollouts for d in r.transcript.died)
    assert any(p.must_write for p in picks) and not all(p.must_write for p in picks)
    assert any(s.written for r in rollouts for s in r.episode.steps)  # segments were written (and rolled back)
    batches = transcript_batches(rollouts, [float(i) for i in range(len(rollouts))], max_nodes=300)
    assert len(batches) > 1 and sum(b.tokens for b in batches) == len(picks)
    model = tiny_loaded.model
    for batch in batches:
        with torch.no_grad():
            logps = tree_logprobs(model, batch, torch.device("cpu"), sliding_window(model), temperature=0.8,
                                  line_end=line_end_ids(tiny_loaded.tokenizer))
        assert torch.allclose(logps, batch.old_logps, atol=1e-4), float((logps - batch.old_logps).abs().max())
