"""Warm-up SFT in the slots format (ExPosST, Shang et al., arXiv 2603.14903): a policy that decodes with
`--decoding slots` is fine-tuned on the sequence the slots engine builds, not on re-encode lines.

The pairs file holds one row per read; the rows of one sentence (`index`) are one episode, from
which `seqpo.slots.slots_episode` builds a single training sequence with explicit positions and
an [L, L] mask hiding unread source. An episode cannot lose single steps (the later steps sit on
top of them), so `--max-wait-share` here drops the *loss* of randomly chosen wait steps instead.
Every labelled token sits in the episode's target part, which is its suffix: batches are
left-padded so the labels share the last columns and the LM head runs only there, as in the line
format (Gemma-3's vocabulary has 262k entries).
"""

from __future__ import annotations

from itertools import groupby

import torch

from .errors import InputFileError
from .languages import LanguagePair
from .slots import additive, layer_masks, slots_episode
from .stream import split_units

IGNORE = -100


def group_episodes(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped per sentence (`index`), in step order; each must run step 1..n and end final."""
    missing = [r for r in rows if "index" not in r or "step" not in r]
    if missing:
        raise InputFileError("the slots format needs `index` and `step` in every pairs row")
    episodes = []
    for index, group in groupby(sorted(rows, key=lambda r: (r["index"], r["step"])), key=lambda r: r["index"]):
        steps = list(group)
        if [r["step"] for r in steps] != list(range(1, len(steps) + 1)) or not steps[-1].get("final", True):
            raise InputFileError(f"pairs rows of sentence {index} are not one whole episode (steps 1..n, last final)")
        episodes.append(steps)
    return episodes


def reads_and_segments(pair: LanguagePair, steps: list[dict]) -> tuple[list[str], list[str]]:
    """The source read at each step (what `stream.chunk_source` gives the engine) and the segment
    written after it. Prefixes are `join_reads` of the reads: words joined by spaces, characters
    joined as they are, so each read is the prefix's new words, or its new text."""
    reads, before = [], ""
    for r in steps:
        prefix = r["source_prefix"]
        if pair.source_unit == "word":
            old, new = split_units(before, "word"), split_units(prefix, "word")
            extends, read = new[: len(old)] == old, " ".join(new[len(old):])
        else:
            extends, read = prefix.startswith(before), prefix[len(before):]
        if not extends:
            raise InputFileError(f"source prefix of sentence {r.get('index')} step {r['step']} "
                                 "does not extend the previous one")
        reads.append(read)
        before = prefix
    return reads, [r["segment"] for r in steps]


def encode_episodes(tokenizer, pair: LanguagePair, episodes: list[list[dict]], slot: int,
                    kept_wait: set[tuple[int, int]] | None = None) -> list[dict]:
    """One training example per episode: input_ids, position_ids, labels ([L] tensors) and the bool
    mask [L, L]. Wait steps not in `kept_wait` ((episode, step) pairs; None = all) carry no loss."""
    out = []
    for e, steps in enumerate(episodes):
        reads, segments = reads_and_segments(pair, steps)
        ep = slots_episode(tokenizer, pair, reads, segments, slot=slot, few_shot=False)
        labels = ep.labels.clone()
        for s, (start, segment) in enumerate(zip(ep.step_starts, segments)):
            if kept_wait is not None and not segment.strip() and (e, s) not in kept_wait:
                labels[start] = IGNORE  # a wait step's only label: its re-fed token predicts "\n"
        out.append({"input_ids": ep.input_ids, "position_ids": ep.position_ids, "labels": labels,
                    "mask": ep.attention_mask})
    return out


def collate(examples: list[dict], pad_id: int) -> dict:
    """Left-pad to the longest episode: pads are dead (they see only themselves, nobody sees them),
    so each episode's computation is unchanged and its labelled suffix ends in the last column."""
    L = max(len(x["input_ids"]) for x in examples)
    B = len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    pos = torch.zeros((B, L), dtype=torch.long)
    labels = torch.full((B, L), IGNORE, dtype=torch.long)
    mask = torch.eye(L, dtype=torch.bool).repeat(B, 1, 1)
    for b, x in enumerate(examples):
        n = len(x["input_ids"])
        ids[b, L - n:], pos[b, L - n:], labels[b, L - n:] = x["input_ids"], x["position_ids"], x["labels"]
        mask[b, L - n:, L - n:] = x["mask"]
    return {"input_ids": ids, "position_ids": pos, "labels": labels, "mask": mask}


def attention_masks(mask: torch.Tensor, position_ids: torch.Tensor, window: int | None, dtype) -> dict:
    """Additive [B, 1, L, L] masks per layer type (Gemma-3: full and sliding-window layers), as the
    engine passes them; the window is by position, as in `slots.visible`."""
    masks = {"full_attention": additive(mask, dtype)}
    if window is not None:
        near = (position_ids[:, :, None] - position_ids[:, None, :]) < window
        masks["sliding_attention"] = additive(mask & near, dtype)
    return masks


def slots_loss(model, input_ids, position_ids, mask, labels, window: int | None) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens (labels sit on the predicting position, no shift),
    with logits only from the first labelled column on; through the model's own forward (DDP)."""
    keep = labels != IGNORE
    cols = keep.any(0).nonzero()
    first = int(cols.min()) if len(cols) else labels.shape[1] - 1
    dtype = torch.get_autocast_dtype(input_ids.device.type) if torch.is_autocast_enabled(input_ids.device.type) \
        else next(model.parameters()).dtype  # the mask must match the attention's query dtype
    out = model(input_ids=input_ids, position_ids=position_ids, use_cache=False,
                attention_mask=layer_masks(model, attention_masks(mask, position_ids, window, dtype)),
                logits_to_keep=input_ids.shape[1] - first)
    logits = out.logits.float()
    return torch.nn.functional.cross_entropy(logits[keep[:, first:]], labels[:, first:][keep[:, first:]])
