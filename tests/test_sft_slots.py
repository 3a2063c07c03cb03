"""Slots-format SFT: episodes rebuilt from pairs rows read what the engine reads, the batched loss
is the cross-entropy of one `slots_episode` forward, padding changes nothing, and a tiny run
learns, resumes and decodes with `--decoding slots`."""

import json

import pytest
import torch

from seqpo.cli import main
from seqpo.errors import InputFileError
from seqpo.languages import parse_pair
from seqpo.sft_slots import IGNORE, collate, encode_episodes, group_episodes, reads_and_segments, slots_loss
from seqpo.slots import sliding_window, slots_episode
from seqpo.stream import chunk_source, join_reads

EN_ZH, ZH_EN = parse_pair("en-zh"), parse_pair("zh-en")
SLOT = 48  # wide enough that the target sits beyond the tiny model's 64-position sliding window


def rows_for(index, pair, source, segments, chunk=1):
    """Pairs rows as `seqpo data partial` writes them: the prefix is join_reads of the reads."""
    reads = chunk_source(source, pair.source_unit, chunk)
    assert len(reads) == len(segments)
    return [{"index": index, "step": t + 1, "source_prefix": join_reads(reads[: t + 1], pair.source_unit),
             "target_prefix": "".join(segments[:t]), "segment": s, "final": t + 1 == len(reads)}
            for t, s in enumerate(segments)]


@pytest.mark.parametrize("pair,source,chunk", [
    (EN_ZH, "I'm sorry  that your order is late.", 1), (EN_ZH, "I'm sorry that your order is late.", 3),
    (ZH_EN, "很抱歉， 您点的餐晚了。", 1), (ZH_EN, "很抱歉， 您点的餐晚了。", 4)])
def test_reads_are_the_engines_reads(pair, source, chunk):
    reads = chunk_source(source, pair.source_unit, chunk)
    segments = ["x"] * len(reads)
    steps = rows_for(0, pair, source, segments, chunk)
    assert reads_and_segments(pair, steps) == (reads, segments)


def test_episodes_group_per_sentence_and_must_be_whole():
    a = rows_for(0, EN_ZH, "It rains.", ["", "下雨了。"])
    b = rows_for(1, EN_ZH, "Hello", ["你好"])
    assert group_episodes(b + a[::-1]) == [a, b]
    with pytest.raises(InputFileError, match="sentence 0"):
        group_episodes(a[1:])
    with pytest.raises(InputFileError, match="does not extend"):
        reads_and_segments(EN_ZH, [a[0], dict(a[1], source_prefix="Its rains.")])


def hand_loss(model, ep, window_ep):
    """Cross-entropy over the labelled positions of one episode, from full logits."""
    add = lambda m: torch.where(m, 0.0, torch.finfo(torch.float32).min)[None, None]
    logits = model(input_ids=ep.input_ids[None], position_ids=ep.position_ids[None],
                   attention_mask={"full_attention": add(ep.attention_mask),
                                   "sliding_attention": add(window_ep.attention_mask)}).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    at = ep.loss_mask.nonzero()[:, 0]
    return -logp[at, ep.labels[at]], ep


EPISODES = [rows_for(0, EN_ZH, "The weather is nice today.", ["", "今天", "天气", "", "很好。"]),
            rows_for(1, EN_ZH, "Our team released the new version of the software last week.",
                     ["我们", "", "团队", "", "", "新", "", "", "软件", "",
                      "上周发布了新版本的软件。"])]


def test_batch_loss_is_the_cross_entropy_of_one_episode_forward(tiny_loaded):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    window = sliding_window(model)
    assert window == 64
    reads, segments = reads_and_segments(EN_ZH, EPISODES[1])
    ep = slots_episode(tok, EN_ZH, reads, segments, slot=SLOT, few_shot=False)
    wep = slots_episode(tok, EN_ZH, reads, segments, slot=SLOT, few_shot=False, window=window)
    assert not torch.equal(ep.attention_mask, wep.attention_mask)  # the window hides the header
    with torch.no_grad():
        expected, _ = hand_loss(model, ep, wep)
        batch = collate(encode_episodes(tok, EN_ZH, [EPISODES[1]], SLOT), tok.pad_token_id)
        ours = slots_loss(model, batch["input_ids"], batch["position_ids"], batch["mask"], batch["labels"], window)
    assert ours.item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_padding_leaves_each_episode_loss_unchanged(tiny_loaded):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    window = sliding_window(model)
    encoded = encode_episodes(tok, EN_ZH, EPISODES, SLOT)
    assert len(encoded[0]["input_ids"]) < len(encoded[1]["input_ids"])

    def loss(examples):
        b = collate(examples, tok.pad_token_id)
        with torch.no_grad():
            return slots_loss(model, b["input_ids"], b["position_ids"], b["mask"], b["labels"], window).item()

    alone = [loss([e]) for e in encoded]
    n = [int((e["labels"] != IGNORE).sum()) for e in encoded]
    # the short episode, left-padded next to a long one whose loss is switched off
    silent = dict(encoded[1], labels=torch.full_like(encoded[1]["labels"], IGNORE))
    assert loss([encoded[0], silent]) == pytest.approx(alone[0], rel=1e-5)
    assert loss(encoded) == pytest.approx((n[0] * alone[0] + n[1] * alone[1]) / sum(n), rel=1e-5)


def test_dropped_waits_lose_only_their_label(tiny_loaded):
    tok = tiny_loaded.tokenizer
    full = encode_episodes(tok, EN_ZH, EPISODES, SLOT)
    kept = {(1, 1)}  # episode 1's second step; every other wait loses its loss
    part = encode_episodes(tok, EN_ZH, EPISODES, SLOT, kept_wait=kept)
    waits = sum(1 for ep in EPISODES for r in ep if not r["segment"])
    dropped = sum(int((f["labels"] != IGNORE).sum() - (p["labels"] != IGNORE).sum()) for f, p in zip(full, part))
    assert dropped == waits - 1
    for f, p in zip(full, part):
        assert torch.equal(f["input_ids"], p["input_ids"]) and torch.equal(f["mask"], p["mask"])


def test_tiny_slots_sft_learns_resumes_and_decodes_with_slots(tiny_model_dir, en_zh_files, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [r for i in range(4) for r in rows_for(i, EN_ZH, "The weather is nice today.",
                                                  ["", "今天", "天气", "", "很好。"])]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "adapter"
    base = ["sft", "--format", "slots", "--pairs", str(pairs), "--pair", "en-zh", "--out", str(out),
            "--model", str(tiny_model_dir), "--batch-size", "2", "--lr", "5e-3", "--save-steps", "3",
            "--logging-steps", "1", "--bf16", "no", "--quiet"]
    assert main(base + ["--max-steps", "3"]) == 0
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    assert main(base + ["--max-steps", "8"]) == 0  # resumes at step 3
    state = json.loads((out / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 8 and losses[-1] < losses[0]
    meta = json.loads((out / "seqpo.json").read_text())
    # 8 waits, 12 writes: a 0.5 share keeps the loss of all 8 waits
    assert meta["format"] == "slots" and meta["episodes"] == 4 and meta["wait_steps_with_loss"] == 8
    src, ref = en_zh_files
    run = tmp_path / "eval"
    capsys.readouterr()
    assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(tiny_model_dir),
                 "--adapter", str(out), "--decoding", "slots", "--policy", "llm", "--out", str(run), "--quiet"]) == 0
    scores = json.loads((run / "scores.json").read_text())
    assert scores["signature"]["decoding"] == "slots" and scores["sentences"] == 5
    assert len((run / "instances.jsonl").read_text().splitlines()) == 5
