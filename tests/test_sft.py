"""Warm-up SFT: formatting, the loss mask, the segment-only loss, and a tiny real run with resume."""

import json

import pytest
import torch

from seqpo.cli import main
from seqpo.languages import parse_pair
from seqpo.sft import IGNORE, format_example, segment_loss, tokenize_example

EN_DE = parse_pair("en-de")


def test_format_matches_inference_continuation():
    prompt, completion = format_example(EN_DE, "If it rains", "", "Wenn es regnet,")
    assert prompt.endswith("German:") and completion == " Wenn es regnet,\n"
    prompt, completion = format_example(EN_DE, "If it rains we", "Wenn es regnet,", " bleiben wir")
    assert prompt.endswith("German: Wenn es regnet,") and completion == " bleiben wir\n"
    assert format_example(EN_DE, "If", "", "")[1] == "\n"  # wait = a bare end marker


def test_loss_mask_covers_segment_and_marker_only(tiny_loaded):
    tok = tiny_loaded.tokenizer
    prompt, completion = format_example(EN_DE, "The weather", "", "Das Wetter")
    ex = tokenize_example(tok, prompt, completion, max_length=512)
    n_prompt = len(tok(prompt).input_ids)
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert tok.decode(ex["input_ids"][n_prompt:]) == " Das Wetter\n"
    short = tokenize_example(tok, prompt, completion, max_length=5)
    assert len(short["input_ids"]) == 5 and short["labels"][-1] != IGNORE  # the segment survives truncation


def test_segment_loss_equals_full_logits_loss(tiny_loaded):
    model = tiny_loaded.model
    ids = torch.tensor([[1, 7, 8, 9, 10, 11], [1, 12, 13, 14, 15, 16]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 9, 10, 11], [IGNORE, IGNORE, 13, 14, IGNORE, IGNORE]])
    mask = torch.ones_like(ids)
    ours = segment_loss(model, ids, mask, labels)
    reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_tiny_sft_run_learns_resumes_and_loads(tiny_model_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"index": 0, "step": 1, "source_prefix": "If", "target_prefix": "", "segment": "", "final": False},
            {"index": 0, "step": 2, "source_prefix": "If it rains", "target_prefix": "", "segment": "Wenn es regnet,",
             "final": True}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    out = tmp_path / "adapter"
    base = ["sft", "--pairs", str(pairs), "--pair", "en-de", "--out", str(out), "--model", str(tiny_model_dir),
            "--batch-size", "4", "--lr", "5e-3", "--save-steps", "3", "--logging-steps", "1", "--bf16", "no",
            "--quiet"]
    assert main(base + ["--max-steps", "3"]) == 0
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    assert main(base + ["--max-steps", "6"]) == 0  # resumes at step 3, runs 3 more
    state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert losses[-1] < losses[0]  # it learned the two examples
    meta = json.loads((out / "seqpo.json").read_text())
    assert (out / "adapter_config.json").exists() and meta["pair"] == "en-de" and meta["stage"] == "sft"
    assert meta["start"] == "none" and meta["command"].startswith("seqpo sft --pairs ") and "--max-steps 6" in meta["command"]
    capsys.readouterr()
    assert main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--adapter", str(out), "--json",
                 "If it rains"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["type"] == "done"


def test_sft_refuses_to_resume_a_checkpoint_made_with_other_settings(tiny_model_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"index": 0, "step": 1, "source_prefix": "If", "target_prefix": "", "segment": "", "final": False},
            {"index": 0, "step": 2, "source_prefix": "If it rains", "target_prefix": "", "segment": "Wenn es regnet,",
             "final": True}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "adapter"
    base = ["sft", "--pairs", str(pairs), "--pair", "en-de", "--out", str(out), "--model", str(tiny_model_dir),
            "--batch-size", "2", "--max-steps", "1", "--save-steps", "1", "--bf16", "no", "--quiet"]
    assert main(base) == 0
    checkpoint = out / "checkpoints" / "checkpoint-1"
    made = sorted(p.name for p in checkpoint.iterdir())
    capsys.readouterr()
    assert main([*base, "--lr", "1e-3", "--format", "slots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings (lr, format)" in err
    assert sorted(p.name for p in checkpoint.iterdir()) == made and not (out / "checkpoints" / "checkpoint-2").exists()
    assert json.loads((out / "settings.json").read_text())["lr"] == 2e-4  # still what made the checkpoint


def test_bad_pairs_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["sft", "--pairs", str(bad), "--out", str(tmp_path / "o"), "--pair", "en-de"]) == 2
    assert "bad.jsonl:1: not JSON" in capsys.readouterr().err



def test_balance_waits():
    from seqpo.sft import balance_waits

    rows = [{"segment": ""}] * 8 + [{"segment": "x"}] * 2
    out = balance_waits(rows, 0.5)
    assert sum(1 for r in out if not r["segment"]) == 2 and len(out) == 4
    assert balance_waits(rows, 1.0) == rows
    assert len(balance_waits(rows, 0.0)) == 2
