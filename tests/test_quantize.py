"""`--quantize int8`: the text model's linear layers as torch's dynamic int8 layers (CPU), on the
tiny random model: every command path runs and gives well-formed output; where it cannot apply,
a one-line error before any model loads."""

import json

import pytest
import torch

from eval_resume import assert_recorded_and_resume_refused
from seqpo.cli import main
from seqpo.model import load_model, load_model_adapters

QUANTIZED = torch.ao.nn.quantized.dynamic.Linear


def test_every_linear_layer_of_the_base_is_int8_and_lora_stays_float(tiny_model_dir, tiny_adapters):
    loaded = load_model(str(tiny_model_dir), quantize="int8")
    layers = dict(loaded.model.named_modules())
    assert isinstance(loaded.model.get_output_embeddings(), QUANTIZED)  # the output layer too
    assert not [n for n, m in layers.items() if type(m) is torch.nn.Linear]
    assert sum(isinstance(m, QUANTIZED) for m in layers.values()) >= 8
    ids = loaded.tokenizer("The weather is nice today.", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids).logits
        reference = load_model(str(tiny_model_dir)).model(input_ids=ids).logits
    assert logits.shape == reference.shape and torch.isfinite(logits).all()

    both = load_model_adapters(str(tiny_model_dir), {k: str(v) for k, v in tiny_adapters.items()}, quantize="int8")
    layers = dict(both.model.named_modules())
    assert [n for n, m in layers.items() if type(m) is torch.nn.Linear]  # LoRA's own layers
    assert all("lora_" in n for n, m in layers.items() if type(m) is torch.nn.Linear)
    outs = []
    with torch.inference_mode():
        for name in tiny_adapters:  # the adapters still switch on the int8 base
            both.model.set_adapter(name)
            outs.append(both.model(input_ids=ids).logits)
        with both.model.disable_adapter():
            outs.append(both.model(input_ids=ids).logits)
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("decoding", ["reencode", "cached", "append", "slots"])
def test_translate_runs_int8_in_every_decoding_mode(decoding, tiny_model_dir, capsys):
    assert main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--quantize", "int8", "--json",
                 "--decoding", decoding, "--policy", "wait-k", "--k", "2", "The weather is nice today."]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = events[-1]
    assert done["type"] == "done" and [e["type"] for e in events].count("done") == 1
    written = " ".join(e["text"] for e in events if e["type"] == "write")
    assert written == done["prediction"]


def test_eval_records_int8_and_refuses_to_resume_without_it(tiny_model_dir, two_line_files, tmp_path, capsys):
    src, ref = two_line_files
    args = ["eval", "--pair", "en-zh", "--model", str(tiny_model_dir), "--src", str(src), "--ref", str(ref),
            "--quiet", "--policy", "wait-k"]
    assert_recorded_and_resume_refused(args, "--quantize", "int8", tmp_path / "run", capsys)


@pytest.mark.parametrize(("extra", "message"), [
    (["--quantize", "int8", "--dtype", "bfloat16"], "quantizes float32 weights"),
    (["--quantize", "int8", "--device", "cuda"], "CPU only"),
])
def test_where_int8_cannot_apply_is_one_line(extra, message, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, as far as seqpo can tell
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert main(["translate", "--model", str(tiny_model_dir), "--device", "cpu", *extra, "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
