"""Every command on every architecture: tiny random Gemma-3 (full + sliding-window layers, a mask
dict), Llama (one 4D mask for all layers) and Qwen2 (layer types, all full; with a chat template),
end to end through the CLI; plus the explicit-mask engines checked against a plain forward."""

from __future__ import annotations

import json

import pytest
import torch

from seqpo.cli import main
from seqpo.engine import engine_for
from seqpo.model import load_model
from seqpo.slots import layer_masks, sliding_window, slots_episode

from conftest import REFERENCES, SENTENCES


def _instances(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "instances.jsonl").read_text().splitlines()]


def test_translate_and_eval_in_every_decoding_mode(tiny_arch_dir, two_line_files, tmp_path, capsys):
    src, ref = two_line_files
    assert main(["translate", "--pair", "en-zh", "--model", str(tiny_arch_dir), "--json", SENTENCES[0]]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert events[-1]["type"] == "done" and len(events) == len(SENTENCES[0].split()) + 1
    predictions = {}
    for mode in ("reencode", "cached", "append", "slots"):
        out = tmp_path / mode
        # re-encode one sentence at a time: `generate` applies Gemma-3's sliding window by cache
        # index, which left padding shifts (the cached engine applies it by position)
        batch = "1" if mode == "reencode" else "8"
        assert main(["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(tiny_arch_dir),
                     "--decoding", mode, "--batch-size", batch, "--out", str(out), "--quiet"]) == 0
        scores = json.loads((out / "scores.json").read_text())
        assert scores["sentences"] == 2 and scores["signature"]["decoding"] == mode
        predictions[mode] = [r["prediction"] for r in sorted(_instances(out), key=lambda r: r["index"])]
    capsys.readouterr()
    # cached decoding is the re-encode computation with a cache: the same output on every architecture
    assert predictions["cached"] == predictions["reencode"]


def test_slots_engine_equals_one_forward_with_the_models_masks(tiny_arch_dir):
    """The slots engine's first token of every step equals one forward over the training sequence
    with the masks the model's forward takes (a dict only where the config lists layer types)."""
    from test_engine import PAIR, SOURCES, drive

    loaded = load_model(str(tiny_arch_dir))
    model, tok = loaded.model, loaded.tokenizer
    window = sliding_window(model)
    assert window == (64 if "gemma" in model.config.model_type else None)
    states, log = drive(engine_for(model, tok, mode="slots", slot=4))
    add = lambda m: torch.where(m, 0.0, torch.finfo(torch.float32).min)[None, None]
    for reads, steps in zip(SOURCES, log):
        segments = [w for _, w in steps]
        ep = slots_episode(tok, PAIR, reads, segments, slot=4)
        masks = {"full_attention": add(ep.attention_mask)}
        if window is not None:
            masks["sliding_attention"] = add(slots_episode(tok, PAIR, reads, segments, slot=4,
                                                           window=window).attention_mask)
        with torch.inference_mode():
            logits = model(input_ids=ep.input_ids[None], position_ids=ep.position_ids[None],
                           attention_mask=layer_masks(model, masks)).logits[0]
        assert logits[ep.step_starts].argmax(-1).tolist() == [c.token_ids[0] for c, _ in steps]


def test_data_sft_and_train(tiny_arch_dir, two_line_files, tmp_path, capsys):
    src, ref = two_line_files
    model = ["--model", str(tiny_arch_dir)]
    pairs = tmp_path / "pairs.jsonl"
    assert main(["data", "partial", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", str(pairs),
                 *model, "--quiet"]) == 0
    rows = [json.loads(x) for x in pairs.read_text().splitlines()]
    assert {r["index"] for r in rows} == {0, 1}
    assert "".join(r["segment"] for r in rows if r["index"] == 0) == REFERENCES[0]
    sft = ["sft", "--pairs", str(pairs), "--pair", "en-zh", *model, "--max-steps", "2", "--batch-size", "4",
           "--max-wait-share", "1", "--bf16", "no", "--quiet"]
    assert main([*sft, "--out", str(tmp_path / "sft")]) == 0
    assert main([*sft, "--out", str(tmp_path / "sft-slots"), "--format", "slots", "--slot", "8"]) == 0
    for name in ("sft", "sft-slots"):
        assert (tmp_path / name / "adapter_config.json").exists()
    run = tmp_path / "run"
    assert main(["train", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--out", str(run), *model,
                 "--adapter", str(tmp_path / "sft"), "--steps", "2", "--sources", "1", "--group", "2",
                 "--max-step-tokens", "4", "--bf16", "no", "--quiet"]) == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] == r["loss"] for r in log)  # no NaN
    capsys.readouterr()
    # the trained adapter serves the slots engine on this architecture
    assert main(["translate", "--pair", "en-zh", *model, "--adapter", str(run), "--decoding", "slots", "--json",
                 SENTENCES[1]]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["type"] == "done"


@pytest.mark.parametrize("decoding", ["reencode", "append"])
def test_serve_post_translate(tiny_arch_dir, decoding):
    from seqpo.serve import ServeSettings, build_app
    from test_serve import LocalClient

    app = build_app(ServeSettings(model=str(tiny_arch_dir), pair="en-zh", decoding=decoding))
    with LocalClient(app) as client:
        body = client.post("/translate", json={"text": SENTENCES[0], "pair": "en-zh"}).json()
    assert body["trace"][-1]["type"] == "done" and body["trace"][-1]["prediction"] == body["prediction"]
    assert [e["read"] for e in body["trace"][:-1]] == list(range(1, len(SENTENCES[0].split()) + 1))


def test_bench(tiny_arch_dir, two_line_files, capsys):
    assert main(["bench", "--src", str(two_line_files[0]), "--pair", "en-zh", "--model", str(tiny_arch_dir),
                 "--limit", "1", "--group", "2", "--lookahead", "2", "--policy", "wait-k"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| decoding |") and len(table) == 2 + 10
