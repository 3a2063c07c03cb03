"""Slot positions and visibility for zero-recompute streaming (ExPosST, Shang et al., arXiv 2603.14903).

Every token in a slots sequence carries three tags: its *kind* (prefix, source, target, or dead),
its RoPE *position*, and *vis* (for a source token: the read it belongs to; for a target token:
how many reads it may see). Inference (`seqpo.engine`, slots mode) and training
(`slots_episode`) build their attention masks from these tags with the one rule in `visible`,
so a policy is trained in exactly the format it runs in.

Layout: `[few-shot prefix][header "...\\nEnglish:"][source region][target line "\\nGerman: ..."]`.
Our slot choice: reads are packed contiguously into a source region of whole slots (`slot` tokens
each, default 16) sized to the sentence (ceil(source tokens / slot) slots; a live stream would size
it by its maximum length). Target positions start after the region, so they never move when more
source arrives; the unfilled slots at the end of the region hold no token at inference and pad
tokens masked out in training. Packing (instead of one slot per read) keeps the source as dense as
in plain text, which the base model needs; the gap between the source read so far and the target
is the unread part of the region, at most `slot - 1` positions once the whole source is read.

Visibility: prefix tokens see the prefix; a source token sees the prefix and the source read so far
(never the target, so its cache entry is the same in every rollout and never needs recomputing);
a target token sees the prefix, the source of the reads it may see, and the target before it.
The last target token is re-fed at each model step (one token) so the next segment starts from
a state that has seen the new read; its earlier copy is dead (hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import SeqpoError
from .languages import LanguagePair
from .prompts import line_piece, slots_header, slots_separator, streaming_prefix

DEAD, PREFIX, SOURCE, TARGET = 0, 1, 2, 3


def visible(q_kind, q_pos, q_vis, k_kind, k_pos, k_vis, window: int | None = None) -> torch.Tensor:
    """Which keys each query may attend to: [..., Q] query tags x [..., K] key tags -> [..., Q, K].

    Dead queries (padding) see nothing here; callers let them see themselves so softmax is defined.
    """
    qk, qp, qv = q_kind[..., :, None], q_pos[..., :, None], q_vis[..., :, None]
    kk, kp, kv = k_kind[..., None, :], k_pos[..., None, :], k_vis[..., None, :]
    # Two target entries at one position are re-fed copies of the same token for different reads
    # (look-ahead runs several in one pass): a copy sees only itself there, never another copy.
    same_copy = (kp != qp) | (kv == qv)
    seen = (kk == PREFIX) | ((kk == SOURCE) & (kv <= qv) & (qk != PREFIX)) | ((kk == TARGET) & (qk == TARGET) & same_copy)
    ok = seen & (kp <= qp) & (qk != DEAD)
    if window is not None:  # Gemma-3 local layers: by position, which is what RoPE was trained on
        ok &= (qp - kp) < window
    return ok


MASKED_LAYER_TYPES = ("full_attention", "sliding_attention")  # layer types an explicit mask can serve


def text_config(model):
    """The (text) config of a model, through DDP and peft wrappers."""
    cfg = getattr(model, "module", model).config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def sliding_window(model) -> int | None:
    """The model's local-attention window, else None: Gemma-3 lists its sliding layers in
    `layer_types`; a config without layer types but with a `sliding_window` (Mistral) slides in
    every layer; Llama and Qwen2 (whose layer types are all full) have none."""
    cfg = text_config(model)
    types = getattr(cfg, "layer_types", None)
    if types is not None:
        return cfg.sliding_window if "sliding_attention" in types else None
    return getattr(cfg, "sliding_window", None)


def layer_masks(model, masks: dict[str, torch.Tensor]):
    """The `attention_mask` argument a model's forward takes, from additive masks keyed by layer type
    ("full_attention", and "sliding_attention" where `sliding_window` is not None).

    transformers' own rule (`masking_utils.create_masks_for_generate`): a model whose config lists
    `layer_types` (Gemma-3, Qwen2) takes a dict keyed by those types; any other model (Llama,
    Mistral) takes one 4D mask for every layer, and fails on a dict."""
    cfg = text_config(model)
    types = getattr(cfg, "layer_types", None)
    if types is None:
        return masks["sliding_attention" if "sliding_attention" in masks else "full_attention"]
    unknown = sorted(set(types) - set(MASKED_LAYER_TYPES))
    if unknown:
        raise SeqpoError(f"{cfg.model_type} has {', '.join(unknown)} layers; explicit attention masks (decoding "
                         "cached/append/slots, slots training, tree updates) support full and sliding-window "
                         "attention only: use --decoding reencode, --format line, --update rows")
    return {t: masks[t] for t in set(types)}


def additive(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool visibility mask [B, Q, K] as the additive [B, 1, Q, K] mask attention layers take."""
    return torch.where(ok, torch.zeros((), dtype=dtype), torch.finfo(dtype).min)[:, None]


def region_size(source_tokens: int, slot: int) -> int:
    """Positions reserved for the source: whole slots, at least one."""
    if slot < 1:
        raise ValueError("slot length must be at least 1")
    return max(1, math.ceil(source_tokens / slot)) * slot


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids if text else []


def prefix_ids(tokenizer, pair: LanguagePair, few_shot: bool = True) -> list[int]:
    """BOS + few-shot block + header: the prefix-kind tokens of every slots sequence."""
    text = (streaming_prefix(pair) if few_shot else "") + slots_header(pair)
    return tokenizer(text).input_ids


def source_piece_ids(tokenizer, pair: LanguagePair, reads: list[str]) -> list[list[int]]:
    return [_ids(tokenizer, line_piece(r, pair.source_unit, i == 0)) for i, r in enumerate(reads)]


def target_piece_ids(tokenizer, pair: LanguagePair, segment: str, first: bool) -> list[int]:
    return _ids(tokenizer, line_piece(segment, pair.target_unit, first))


@dataclass
class SlotsEpisode:
    """One whole episode as a single training sequence (all tensors [L], mask [L, L])."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor  # bool, True = may attend (pass as the 4D mask [1, 1, L, L])
    labels: torch.Tensor  # next target token for each policy output position, -100 elsewhere
    loss_mask: torch.Tensor  # bool: positions whose label is a policy output
    kind: torch.Tensor
    vis: torch.Tensor
    step_starts: list[int]  # index of each step's re-fed token: where the step's decision is made


def slots_episode(tokenizer, pair: LanguagePair, reads: list[str], segments: list[str], slot: int = 16,
                  few_shot: bool = True, window: int | None = None) -> SlotsEpisode:
    """The slots sequence of one episode: `segments[t]` was written after `reads[:t+1]` ("" = wait).

    Mirrors the engine step by step: at step t the last target token is re-fed (seeing reads 1..t)
    and the segment follows; each step's last token predicts the end of line ("\\n"), and its copy
    is hidden from later steps, which re-feed it. Labels sit on the token *before* the predicted
    one (causal LM convention), so every re-fed and segment token carries a label.
    """
    if len(reads) != len(segments):
        raise ValueError("one segment per read")
    newline = _ids(tokenizer, "\n")[-1]
    ids, kind, pos, vis, label = [], [], [], [], []

    def put(token, k, p, v, lab=-100):
        ids.append(token), kind.append(k), pos.append(p), vis.append(v), label.append(lab)

    for t in prefix_ids(tokenizer, pair, few_shot):
        put(t, PREFIX, len(ids), 0)
    src_start = len(ids)
    pieces = source_piece_ids(tokenizer, pair, reads)
    n_src = sum(len(p) for p in pieces)
    region = region_size(n_src, slot)
    p = src_start
    for r, piece in enumerate(pieces, 1):
        for t in piece:
            put(t, SOURCE, p, r)
            p += 1
    for _ in range(region - n_src):  # unfilled slots: present in training, masked for everyone
        put(tokenizer.pad_token_id, DEAD, p, 0)
        p += 1
    line = _ids(tokenizer, slots_separator(pair))  # target line; its last token is re-fed each step
    tgt = src_start + region
    for t in line[:-1]:
        put(t, TARGET, tgt, 1)
        tgt += 1
    last, last_pos, written = line[-1], tgt, False
    starts = []
    for step, segment in enumerate(segments, 1):
        starts.append(len(ids))
        new = target_piece_ids(tokenizer, pair, segment, first=not written)
        written = written or bool(new)
        chain = [last] + new
        for i, t in enumerate(chain):
            put(t, TARGET, last_pos + i, step, chain[i + 1] if i + 1 < len(chain) else newline)
        # the step's last token predicted "\n"; later steps see its re-fed copy instead
        kind[-1] = -1  # marked; turned DEAD for other queries below
        last, last_pos = chain[-1], last_pos + len(chain) - 1
    kinds = torch.tensor(kind)
    hidden = kinds == -1
    kinds[hidden] = TARGET
    tags = dict(q_kind=kinds, q_pos=torch.tensor(pos), q_vis=torch.tensor(vis))
    key_kind = kinds.clone()
    key_kind[hidden] = DEAD
    mask = visible(**tags, k_kind=key_kind, k_pos=tags["q_pos"], k_vis=tags["q_vis"], window=window)
    n = len(ids)
    idx = torch.arange(n)
    mask &= idx[None, :] <= idx[:, None]  # a re-fed copy never sees the copies after it
    mask[idx, idx] |= True  # hidden and pad tokens still see themselves (defined softmax)
    labels = torch.tensor(label)
    kinds[hidden] = DEAD  # for the caller: these entries are not in the inference cache
    return SlotsEpisode(torch.tensor(ids), tags["q_pos"], mask, labels, labels != -100, kinds, tags["q_vis"], starts)
