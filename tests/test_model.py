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
    from seqpo import model_names as m

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
    from seqpo.model_names import resolve_adapter, shipped_adapter_dir

    shipped = shipped_adapter_dir(pair)
    assert (shipped / "adapter_config.json").exists() and (shipped / "adapter_model.safetensors").exists()
    assert json.loads((shipped / "seqpo.json").read_text())["pair"] == pair
    assert resolve_adapter(None, pair, None) == str(shipped)
    assert resolve_adapter(None, "zh-en", None) is None  # no zh-en adapter ships


BUILD_SLOWLY = """
import os, sys, time
from pathlib import Path
from seqpo.model import build_cache_dir
def build(tmp):
    (tmp / "owner").write_text(str(os.getpid()))
    Path(sys.argv[2]).touch()  # the build has started
    time.sleep(float(sys.argv[3]))
    (tmp / "config.json").write_text("{}")
print((build_cache_dir(Path(sys.argv[1]), build) / "owner").read_text())
"""


def _build_in_subprocess(target, started, seconds):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", BUILD_SLOWLY, str(target), str(started), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _leftovers(parent, target) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p != target and not p.name.endswith(".lock"))


def test_two_processes_building_the_cache_at_once_share_one_copy(tmp_path):
    target = tmp_path / "gemma"
    procs = [_build_in_subprocess(target, tmp_path / f"started-{i}", 1.0) for i in range(2)]
    owners = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], owners
    # both use the first one's folder: it was never deleted or replaced under the one that made it
    assert owners[0][0] == owners[1][0] == (target / "owner").read_text() + "\n"
    assert (target / "config.json").exists()
    assert _leftovers(tmp_path, target) == [n for n in ("started-0", "started-1") if (tmp_path / n).exists()]


def test_a_killed_build_leaves_no_orphan_and_no_cache(tmp_path):
    import time

    target = tmp_path / "gemma"
    killed = _build_in_subprocess(target, tmp_path / "started", 60)
    while not (tmp_path / "started").exists():
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.05)
    killed.kill()  # SIGKILL mid-build
    killed.wait(timeout=30)
    assert not target.exists() and any(n.startswith(".gemma-build-") for n in _leftovers(tmp_path, target))
    (tmp_path / "started").unlink()
    fresh = _build_in_subprocess(target, tmp_path / "started", 0)
    out, err = fresh.communicate(timeout=60)
    assert fresh.returncode == 0, err
    assert out.strip() == str(fresh.pid) and _leftovers(tmp_path, target) == ["started"]


def test_a_damaged_cache_is_replaced_once(tmp_path):
    from seqpo.model import build_cache_dir

    target = tmp_path / "gemma"
    target.mkdir()
    (target / "half").write_text("cut short")
    damaged = target.stat()

    def build(tmp):
        (tmp / "config.json").write_text("{}")

    assert build_cache_dir(target, build, damaged) == target
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    (target / "mine").write_text("made by another process")  # a second process saw the same damage
    assert build_cache_dir(target, lambda tmp: None, damaged) == target
    assert (target / "mine").exists()  # not replaced again: it was already repaired
    assert _leftovers(tmp_path, target) == []


def test_an_unreadable_bundled_cache_is_rebuilt(tiny_model_dir, monkeypatch, tmp_path):
    import shutil

    import seqpo.model as m

    # the cache is this test's own (conftest isolates SEQPO_CACHE whatever the environment says), so
    # the tiny model written under the bundled model's name can never reach a user's cache
    assert str(m.cache_dir()).startswith(str(tmp_path))
    monkeypatch.setattr(m, "_dequantize", lambda base, into: shutil.copytree(tiny_model_dir, into, dirs_exist_ok=True))
    cached = m.bundled_cache_dir()
    shutil.copytree(tiny_model_dir, cached)
    (cached / "config.json").write_text("{broken")  # complete-looking, but it will not load
    loaded = load_model(None, None)
    assert loaded.model.config.hidden_size == 32
    assert json.loads((cached / "config.json").read_text())["hidden_size"] == 32
    assert sorted(p.name for p in cached.parent.iterdir()) == [".gemma-3-270m.lock", "gemma-3-270m"]


# -- --device and --dtype ---------------------------------------------------------------------

def test_auto_device_and_dtype_on_a_cpu_machine(monkeypatch):
    from seqpo.model import resolve_device, resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


def test_auto_picks_the_gpu_and_bf16_where_there_is_one(monkeypatch):
    from seqpo.errors import SettingsError
    from seqpo.model import resolve_device, resolve_dtype, training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto-map") == "auto-map" and resolve_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", "cuda") == torch.float32  # never float16 unasked: Gemma-3 overflows in it
    with pytest.raises(SettingsError, match="only 2 CUDA"):
        resolve_device("cuda:2")
    with pytest.raises(SettingsError, match="training takes auto, cpu or cuda"):
        training_device("cuda:1")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "auto-map", "gpu"])
def test_a_gpu_asked_for_without_one_is_a_one_line_error(device, tiny_model_dir, monkeypatch, capsys):
    from seqpo.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["translate", "--model", str(tiny_model_dir), "--device", device, "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device" in err
    assert ("no CUDA GPU" in err) == (device != "gpu")


def test_bfloat16_weights_on_the_cpu(tiny_model_dir, tmp_path, capsys):
    loaded = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert str(next(loaded.model.parameters()).device) == "cpu"
    assert {p.dtype for p in load_model(str(tiny_model_dir)).model.parameters()} == {torch.float32}
    from seqpo.cli import main

    for decoding in ("reencode", "slots"):  # the explicit masks follow the weights' dtype
        assert main(["translate", "--model", str(tiny_model_dir), "--dtype", "bfloat16", "--decoding", decoding,
                     "--json", "The weather is nice today."]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["type"] == "done"
