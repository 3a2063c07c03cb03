"""recipes/*.sh and benchmarks/gpu_check.sh: with DRY_RUN=1 they print their seqpo commands; every
one of them parses with the CLI's parser and builds (and validates) its settings, on the tiny model."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from seqpo.cli import build_parser
from seqpo.config import build_settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(ROOT.glob("recipes/*.sh")) + [ROOT / "benchmarks" / "gpu_check.sh"]


def settings_class(argv: list[str]):
    from seqpo.bench import BenchSettings
    from seqpo.data.build import PartialDataSettings
    from seqpo.evaluate import EvalSettings
    from seqpo.rl.train import TrainSettings
    from seqpo.serve import ServeSettings
    from seqpo.sft import SFTSettings
    from seqpo.translate import TranslateSettings

    classes = {"translate": TranslateSettings, "eval": EvalSettings, "serve": ServeSettings, "sft": SFTSettings,
               "train": TrainSettings, "bench": BenchSettings, "data": PartialDataSettings}
    return classes[argv[0]]


def seqpo_argv(line: str) -> list[str]:
    """The seqpo arguments of a printed command: `seqpo ...` or `accelerate launch ... -m seqpo.cli ...`."""
    words = shlex.split(line)
    if words[0] == "seqpo":
        return words[1:]
    assert words[:2] == ["accelerate", "launch"], line
    return words[words.index("seqpo.cli") + 1:]


def dry_run(script: Path, tmp_path: Path, **env) -> list[str]:
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path / "out"), **env})
    return [line for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
@pytest.mark.parametrize("gpus", ["1", "2"])
def test_every_printed_command_parses_and_validates(script, gpus, tiny_model_dir, tmp_path):
    lines = dry_run(script, tmp_path, MODEL=str(tiny_model_dir), GPUS=gpus)
    assert lines
    commands = set()
    for line in lines:
        argv = seqpo_argv(line)
        args = build_parser().parse_args(argv)
        settings = build_settings(settings_class(argv), args)
        commands.add(argv[0])
        assert settings.model == str(tiny_model_dir)
        if argv[0] == "train" and settings.rollout_backend == "hf":
            settings.validate()  # ranges and required files; vLLM is not installed here
        if argv[0] == "train":
            assert str(tmp_path / "out") in settings.out
    if script.name == "gpu_check.sh":
        assert commands == {"eval", "train", "serve", "bench"}
        assert all("--device cuda" in line for line in lines)
    else:
        assert {"data", "sft", "train", "eval"} <= commands
        assert any(line.startswith("accelerate launch") for line in lines) == (gpus == "2")


def test_the_recipe_carries_the_papers_settings(tmp_path):
    train = next(seqpo_argv(x) for x in dry_run(ROOT / "recipes" / "seqpo_simt.sh", tmp_path) if " train " in x)
    settings = build_settings(settings_class(train), build_parser().parse_args(train))
    # SeqPO-SiMT (arXiv 2505.20622): B = 5, T 1.0, 60 tokens per step, lambda 2, beta 0.02 En->Zh, lr 1e-6, bf16
    assert (settings.group, settings.temperature, settings.max_step_tokens, settings.lam, settings.beta,
            settings.lr, settings.bf16) == (5, 1.0, 60, 2.0, 0.02, 1e-6, "yes")
    zh = next(seqpo_argv(x) for x in dry_run(ROOT / "recipes" / "seqpo_simt.sh", tmp_path, PAIR="zh-en")
              if " train " in x)
    assert build_settings(settings_class(zh), build_parser().parse_args(zh)).beta == 0.1


def test_gpu_check_says_why_it_stops_without_cuda(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": str(Path(os.sys.executable))}
    if subprocess.run([env["PYTHON"], "-c", "import torch, sys; sys.exit(torch.cuda.is_available())"]).returncode:
        pytest.skip("this machine has CUDA")
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
