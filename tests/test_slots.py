"""Slots training format (ExPosST): masks hide unread source and unfilled slots, labels and loss
mask sit on the policy's outputs."""

import torch

from seqpo.languages import parse_pair
from seqpo.slots import DEAD, PREFIX, SOURCE, TARGET, region_size, slots_episode, visible


def test_region_size_whole_slots():
    assert region_size(0, 16) == 16
    assert region_size(16, 16) == 16
    assert region_size(17, 16) == 32


def test_visibility_rule_by_hand():
    # keys: prefix@0, source read1 @1, source read2 @2, target @10 ; queries: the same tokens
    kind = torch.tensor([PREFIX, SOURCE, SOURCE, TARGET])
    pos = torch.tensor([0, 1, 2, 10])
    vis = torch.tensor([0, 1, 2, 1])  # the target token may see one read
    ok = visible(kind, pos, vis, kind, pos, vis)
    assert ok.tolist() == [
        [True, False, False, False],  # prefix sees only the prefix
        [True, True, False, False],  # read 1 sees prefix and itself
        [True, True, True, False],  # read 2 sees reads 1..2, never the target
        [True, True, False, True],  # the target sees read 1 only (read 2 is not yet seen)
    ]
    assert visible(kind, pos, vis, kind, pos, vis, window=2)[3].tolist() == [False, False, False, True]


def test_slots_episode_masks_and_labels(tiny_loaded):
    tok = tiny_loaded.tokenizer
    pair = parse_pair("en-de")
    reads, segments = ["The", "weather", "is nice."], ["", "Das Wetter", "ist schön."]
    ep = slots_episode(tok, pair, reads, segments, slot=16, few_shot=False)
    L = len(ep.input_ids)
    assert ep.attention_mask.shape == (L, L)
    src = (ep.kind == SOURCE).nonzero()[:, 0]
    n_src = len(src)
    region = region_size(n_src, 16)
    first_src = int(ep.position_ids[src[0]])
    # the source is packed, and the target starts right after the reserved region
    assert ep.position_ids[src].tolist() == list(range(first_src, first_src + n_src))
    tgt = (ep.kind == TARGET).nonzero()[:, 0]
    assert int(ep.position_ids[tgt].min()) == first_src + region
    # unfilled slots: pad tokens that no other token may attend to
    pads = [i for i in range(int(src[-1]) + 1, int(tgt[0])) if ep.kind[i] == DEAD]
    assert len(pads) == region - n_src
    for i in pads:
        col = ep.attention_mask[:, i].clone()
        col[i] = False
        assert not col.any()
    # each step's tokens see exactly the source read before it
    for i in tgt.tolist():
        seen_reads = {int(ep.vis[j]) for j in src.tolist() if ep.attention_mask[i, j]}
        assert seen_reads == set(range(1, int(ep.vis[i]) + 1))
    # source never sees the target
    assert not ep.attention_mask[src][:, tgt].any()
    # one decision per step; every step ends its line
    newline = tok("\n", add_special_tokens=False).input_ids[-1]
    assert len(ep.step_starts) == 3
    labels = ep.labels[ep.loss_mask].tolist()
    assert labels.count(newline) >= 3
    seg_ids = [tok(f" {s}", add_special_tokens=False).input_ids for s in segments if s]
    assert int(ep.loss_mask.sum()) == 3 + sum(len(s) for s in seg_ids)  # re-fed tokens + segments
    assert ep.labels[ep.step_starts[0]] == newline  # step 1 waits
    assert ep.labels[ep.step_starts[1]] == seg_ids[0][0]  # step 2 starts writing
