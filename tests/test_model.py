import json

import pytest
import torch

from seqpo.errors import ModelLoadError
from seqpo.model import cache_dir, load_model


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQPO_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_adapter_round_trip(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    saved = {k: v.clone() for k, v in lora.state_dict().items() if "lora_" in k}

    loaded = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    got = {k: v for k, v in loaded.model.state_dict().items() if "lora_" in k}
    assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)
    ids = torch.tensor([[1, 5, 6, 7]])
    plain = load_model(str(tiny_model_dir)).model(ids).logits
    assert not torch.allclose(loaded.model(ids).logits, plain)  # the adapter changes the model


def test_missing_adapter_is_clear(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        load_model(str(tiny_model_dir), adapter=str(tmp_path))


def test_adapter_resolution(monkeypatch, tmp_path):
    from seqpo import model as m

    monkeypatch.setattr(m, "shipped_adapter_dir", lambda pair: tmp_path / pair)
    assert m.resolve_adapter(None, "en-zh", None) is None  # nothing shipped
    (tmp_path / "en-zh").mkdir()
    (tmp_path / "en-zh" / "adapter_config.json").write_text("{}")
    assert m.resolve_adapter(None, "en-zh", None) == str(tmp_path / "en-zh")
    assert m.resolve_adapter("none", "en-zh", None) is None
    assert m.resolve_adapter(None, "en-zh", "/some/other/model") is None  # trained on the bundled model only
    assert m.resolve_adapter("/my/adapter", "en-zh", None) == "/my/adapter"
    from seqpo.evaluate import EvalSettings

    s = EvalSettings(pair="en-zh")
    assert s.adapter == str(tmp_path / "en-zh") and not s.use_few_shot()
    assert EvalSettings(pair="en-zh", adapter="none").use_few_shot()


@pytest.mark.parametrize("pair", ["en-zh", "en-de"])
def test_shipped_adapter_is_the_default_for_the_bundled_model(pair):
    from seqpo.model import resolve_adapter, shipped_adapter_dir

    shipped = shipped_adapter_dir(pair)
    assert (shipped / "adapter_config.json").exists() and (shipped / "adapter_model.safetensors").exists()
    assert json.loads((shipped / "seqpo.json").read_text())["pair"] == pair
    assert resolve_adapter(None, pair, None) == str(shipped)
    assert resolve_adapter(None, "zh-en", None) is None  # no zh-en adapter ships
