"""`seqpo train` end to end on a tiny random model: learning signal, exact resume, CLI, plots."""

import json
from pathlib import Path

import pytest
import torch

from seqpo.cli import main
from seqpo.languages import parse_pair
from seqpo.prompts import seqpo_prompt
from seqpo.rl.train import TrainSettings, train

SOURCES = ["The weather is nice today.", "Our team released the new version of the software last week.",
           "I would like a cup of tea, please.", "The new version is nice."]
REFERENCES = ["今天天气很好。", "我们团队上周发布了新版本的软件。", "请给我一杯茶。", "新版本很好。"]


@pytest.fixture(scope="module")
def waiting_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its output row for the newline pointed along its mean final hidden
    state, so a streaming step starts with a wait ~85% of the time (a model that waits too much,
    like an over-cautious SFT policy)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pair = parse_pair("en-zh")
    prompts = [seqpo_prompt(pair, pre, t) for pre in ["The", "The weather is", "Our team released the new"]
               for t in ["", "今天"]]
    with torch.no_grad():
        mean = torch.stack([model.model(**tok(p, return_tensors="pt")).last_hidden_state[0, -1]
                            for p in prompts]).mean(0)
        newline = tok("\n", add_special_tokens=False).input_ids[0]
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
        model.lm_head.weight[newline] = 8 * mean / mean.norm() ** 2
    out = tmp_path_factory.mktemp("waiting-model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def train_files(tmp_path) -> tuple[Path, Path]:
    src, ref = tmp_path / "train.en", tmp_path / "train.zh"
    src.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    ref.write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    return src, ref


def _settings(model, files, out, **kw) -> TrainSettings:
    base = dict(pair="en-zh", src=str(files[0]), ref=str(files[1]), out=str(out), model=str(model),
                adapter="none", few_shot="no", sources=2, group=4, max_step_tokens=6, bf16="no", seed=0)
    return TrainSettings(**{**base, **kw})


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_latency_only_reward_lowers_the_wait_fraction(waiting_model, train_files, tmp_path):
    # lambda = 0: the reward is minus the (group-normalised) lag, nothing else
    latency_only = dict(lam=0.0, no_truncate=True, beta=0.0, steps=6, save_every=100)
    train(_settings(waiting_model, train_files, tmp_path / "rl", lr=1e-3, **latency_only), progress=False)
    waits = [r["wait_fraction"] for r in _log(tmp_path / "rl")]
    train(_settings(waiting_model, train_files, tmp_path / "frozen", lr=0.0, **latency_only), progress=False)
    frozen = [r["wait_fraction"] for r in _log(tmp_path / "frozen")]
    assert waits[0] > 0.6 and min(frozen) > 0.6  # the start waits a lot, and so does a policy that never learns
    assert sum(waits[-3:]) / 3 < waits[0] - 0.3, waits
    assert (tmp_path / "rl" / "adapter_config.json").exists()  # the final adapter, loadable with --adapter


def test_resume_gives_the_same_next_step(waiting_model, train_files, tmp_path):
    common = dict(lr=1e-3, beta=0.05, save_every=1)
    train(_settings(waiting_model, train_files, tmp_path / "straight", steps=3, **common), progress=False)
    train(_settings(waiting_model, train_files, tmp_path / "killed", steps=2, **common), progress=False)
    # the killed run also logged half a line before dying; resume must drop it and go on from step 2
    with (tmp_path / "killed" / "log.jsonl").open("a") as fh:
        fh.write('{"step": 3, "rew')
    train(_settings(waiting_model, train_files, tmp_path / "killed", steps=3, **common), progress=False)

    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    timing = ("rollout_s", "update_s", "tokens_per_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(_log(tmp_path / "straight")) == strip(_log(tmp_path / "killed"))
    assert _log(tmp_path / "straight")[-1]["kl"] > 0


class Killed(Exception):
    """Stands in for a kill -9: the run stops where it is, with what it wrote so far on disk."""


@pytest.fixture(scope="module")
def straight_three_steps(waiting_model, tmp_path_factory) -> list[dict]:
    files = tmp_path_factory.mktemp("straight-files")
    (files / "s.en").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    (files / "r.zh").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("straight") / "run"
    train(_settings(waiting_model, (files / "s.en", files / "r.zh"), out, steps=3, lr=1e-3, beta=0.05,
                    save_every=1, eval_every=1, dev_src=str(files / "s.en"), dev_ref=str(files / "r.zh"),
                    dev_limit=1), progress=False)
    return _log(out)


@pytest.mark.parametrize("window", ["before", "after"])
def test_kill_around_a_checkpoint_leaves_no_gap_in_the_log(waiting_model, train_files, tmp_path, monkeypatch,
                                                           straight_three_steps, window):
    """A kill just before or just after step 2's checkpoint is saved: the resumed log has every
    step (and its dev eval) exactly once, equal to a run that was never killed."""
    import seqpo.rl.train as rl_train

    real = rl_train.save_checkpoint

    def crash_at_step_2(out, step, *args, **kwargs):
        if step == 2 and window == "before":
            raise Killed
        real(out, step, *args, **kwargs)
        if step == 2 and window == "after":
            raise Killed

    run = _settings(waiting_model, train_files, tmp_path / "run", steps=3, lr=1e-3, beta=0.05, save_every=1,
                    eval_every=1, dev_src=str(train_files[0]), dev_ref=str(train_files[1]), dev_limit=1)
    monkeypatch.setattr(rl_train, "save_checkpoint", crash_at_step_2)
    with pytest.raises(Killed):
        train(run, progress=False)
    monkeypatch.setattr(rl_train, "save_checkpoint", real)
    train(run, progress=False)
    timing = ("rollout_s", "update_s", "tokens_per_s", "AL_CA", "LAAL_CA", "model_seconds_per_sentence",
              "wall_seconds_per_sentence")

    def strip(rows):
        return [{k: strip([v])[0] if isinstance(v, dict) else v for k, v in r.items() if k not in timing} for r in rows]

    assert [r["step"] for r in _log(tmp_path / "run")] == [1, 1, 2, 2, 3, 3]  # a step line and its eval line
    assert strip(_log(tmp_path / "run")) == strip(straight_three_steps)
    assert not list((tmp_path / "run").glob(".log.jsonl.*"))  # the log rewrite on resume left no temp file


def test_train_refuses_other_settings_in_the_same_folder(waiting_model, train_files, tmp_path, capsys):
    train(_settings(waiting_model, train_files, tmp_path / "run", steps=1, lr=1e-3), progress=False)
    args = ["train", "--pair", "en-zh", "--src", str(train_files[0]), "--ref", str(train_files[1]),
            "--out", str(tmp_path / "run"), "--model", str(waiting_model), "--adapter", "none",
            "--few-shot", "no", "--group", "4", "--sources", "2", "--max-step-tokens", "6", "--lr", "0.5",
            "--bf16", "no", "--quiet"]
    assert main(args) == 2
    assert "other settings (lr)" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--group", "1"], "--group must be at least 2"),
    (["--quality", "comet"], "--quality comet needs --comet"),
    (["--dev-src", "x.en"], "--dev-src and --dev-ref go together"),
    (["--rollout-backend", "vllm"], "needs vLLM"),  # imported only when chosen; not installed here
    (["--format", "slots", "--update", "rows"], "--format slots samples on its own engine"),
])
def test_train_bad_settings_are_one_line_errors(train_files, tmp_path, capsys, extra, message):
    code = main(["train", "--src", str(train_files[0]), "--ref", str(train_files[1]), "--out", str(tmp_path / "o"),
                 "--bf16", "no", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_train_without_a_shipped_sft_adapter_needs_adapter(train_files, tmp_path, capsys):
    """Unset --adapter means the pair's shipped SFT adapter. Where none ships (en-ja on the bundled
    model, any other --model) `seqpo train` refuses in one line instead of training a fresh LoRA on
    the bare model unasked; `--adapter none` asks for exactly that."""
    from seqpo.errors import SettingsError
    from seqpo.model_names import shipped_adapter_dir

    files = ["--src", str(train_files[0]), "--ref", str(train_files[1]), "--out", str(tmp_path / "o")]
    assert main(["train", "--pair", "en-ja", *files, "--bf16", "no"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no SFT adapter ships for en-ja on the bundled model" in err and "--adapter none" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    with pytest.raises(SettingsError, match="no SFT adapter ships for --model .*--adapter none"):
        TrainSettings(pair="en-zh", model=str(tmp_path / "other-model"), src="s", ref="r", out="o").validate()
    bare = TrainSettings(pair="en-ja", adapter="none", src="s", ref="r", out="o")
    assert bare.adapter is None and str(bare.validate()) == "en-ja"  # asked for: no refusal
    for pair in ("en-zh", "en-de"):  # the shipped SFT adapter is the start
        settings = TrainSettings(pair=pair, src="s", ref="r", out="o")
        assert settings.adapter == str(shipped_adapter_dir(pair, "sft")) and str(settings.validate()) == pair


def test_periodic_eval_and_plots(waiting_model, train_files, tmp_path):
    out = tmp_path / "run"
    train(_settings(waiting_model, train_files, out, steps=2, lr=1e-3, eval_every=1, dev_src=str(train_files[0]),
                    dev_ref=str(train_files[1]), dev_limit=2), progress=False)
    evals = [r for r in _log(out) if "eval" in r]
    assert [r["step"] for r in evals] == [1, 2]
    assert {"BLEU", "chrF", "AL", "LAAL", "wait_fraction"} <= evals[0]["eval"].keys()
    assert (out / "eval" / "step-000002" / "scores.json").exists()
    meta = json.loads((out / "seqpo.json").read_text())
    assert meta["stage"] == "seqpo" and meta["start"] == "none" and meta["dev"]["step"] == 2
    assert meta["dev"]["chrF"] == evals[-1]["eval"]["chrF"]
    assert main(["plot", str(out)]) == 0
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    chart = tmp_path / "ql.png"
    folders = f"step1={out / 'eval' / 'step-000001'},step2={out / 'eval' / 'step-000002'}"
    assert main(["plot", "--eval", folders, "--out", str(chart)]) == 0
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "nothing-here")]) == 2


def test_cli_run_records_its_command_and_start(waiting_model, train_files, tmp_path):
    out = tmp_path / "cli"
    argv = ["train", "--src", str(train_files[0]), "--ref", str(train_files[1]), "--out", str(out), "--model",
            str(waiting_model), "--adapter", "none", "--few-shot", "no", "--steps", "1", "--sources", "1", "--group", "2",
            "--max-step-tokens", "4", "--bf16", "no", "--max-source-units", "6", "--quiet"]
    assert main(argv) == 0
    meta = json.loads((out / "seqpo.json").read_text())
    assert meta["command"].startswith("seqpo train --src ") and "--max-source-units 6" in meta["command"]
    assert meta["stage"] == "seqpo" and meta["start"] == "none" and meta["episodes"] == 2


def test_shipped_adapters_are_selectable_by_stage():
    from seqpo.errors import ModelLoadError
    from seqpo.model_names import resolve_adapter, shipped_adapter_dir

    sft = json.loads((shipped_adapter_dir("en-zh", "sft") / "seqpo.json").read_text())
    assert sft["stage"] == "sft" and sft["command"].startswith("seqpo sft") and sft["dev"]
    assert resolve_adapter("sft", "en-zh", None) == str(shipped_adapter_dir("en-zh", "sft"))
    assert resolve_adapter(None, "en-zh", None) == str(shipped_adapter_dir("en-zh"))
    assert TrainSettings(pair="en-zh").adapter == str(shipped_adapter_dir("en-zh", "sft"))  # SeqPO starts from SFT
    # the en-zh SeqPO adapter ships (it beat its SFT start on dev) and is the default; its start is selectable
    meta = json.loads((shipped_adapter_dir("en-zh", "seqpo") / "seqpo.json").read_text())
    assert meta["stage"] == "seqpo" and meta["command"].startswith("seqpo train") and meta["dev"]["lines"] == 100
    assert resolve_adapter(meta["start"], "en-zh", None) == str(shipped_adapter_dir("en-zh", "sft"))
    assert resolve_adapter(None, "en-zh", None) == resolve_adapter("seqpo", "en-zh", None) == str(shipped_adapter_dir("en-zh", "seqpo"))
    assert resolve_adapter(None, "en-de", None) == resolve_adapter("sft", "en-de", None)  # no en-de SeqPO adapter
    with pytest.raises(ModelLoadError, match="no seqpo adapter ships for en-de"):
        resolve_adapter("seqpo", "en-de", None)


@pytest.mark.parametrize("lora_layers", [0, 1])
def test_reference_is_the_start_adapter_and_the_export_loads_on_the_base(waiting_model, train_files, tmp_path,
                                                                          lora_layers):
    """Training starts from an SFT adapter: the KL reference is that policy (KL 0 before the first
    update), and OUT is one standard adapter for the original base that reproduces the trained policy.
    With --lora-layers 1 the trained LoRA sits in the top layer only (the start adapter in every
    layer), and the update still scores each token as it was sampled."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from seqpo.model import load_model

    start = tmp_path / "sft"
    lm = load_model(str(waiting_model)).model
    sft = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    sft.save_pretrained(start)

    out = tmp_path / "rl"
    train(_settings(waiting_model, train_files, out, adapter=str(start), steps=2, lr=1e-2, beta=0.1, save_every=1,
                    lora_layers=lora_layers), progress=False)
    log = _log(out)
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-7) and log[1]["kl"] > 0
    assert max(r["logp_gap"] for r in log if "logp_gap" in r) < 1e-4
    from safetensors.torch import load_file

    layers = {k.split(".layers.")[1].split(".")[0]
              for k in load_file(out / "checkpoints" / "step-000002" / "adapter_model.safetensors")}
    assert layers == ({"1"} if lora_layers else {"0", "1"})

    ids = torch.tensor([[2, 40, 41, 42, 43, 44]])
    exported = load_model(str(waiting_model), str(out)).model
    merged = PeftModel.from_pretrained(load_model(str(waiting_model)).model, str(start)).merge_and_unload()
    trained = PeftModel.from_pretrained(merged, str(out / "checkpoints" / "step-000002"))
    start_only = load_model(str(waiting_model), str(start)).model
    with torch.no_grad():
        a, b, c = (m(input_ids=ids).logits for m in (exported, trained, start_only))
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)  # training changed the policy


@pytest.mark.parametrize("fmt", ["append", "slots"])
def test_the_append_and_slots_formats_train_on_their_own_transcripts(waiting_model, train_files, tmp_path, fmt):
    """Rollouts on the format's engine, the update over each episode's transcript: every sampled
    token scored as it was sampled, in every step; the dev eval decodes in the format."""
    out = tmp_path / fmt
    train(_settings(waiting_model, train_files, out, format=fmt, steps=2, lr=1e-2, beta=0.1, save_every=2,
                    dev_src=str(train_files[0]), dev_ref=str(train_files[1]), dev_limit=2), progress=False)
    log = _log(out)
    steps = [r for r in log if "logp_gap" in r]
    assert len(steps) == 2 and max(r["logp_gap"] for r in steps) < 1e-4
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-7) and steps[1]["kl"] > 0  # the update moved the policy
    assert [r["step"] for r in log if "eval" in r] == [2]
    info = json.loads((out / "seqpo.json").read_text())
    assert info["format"] == fmt and ("slot" in info) == (fmt == "slots")
    assert json.loads((out / "eval" / "step-000002" / "scores.json").read_text())["signature"]["decoding"] == fmt


def _torchrun(args: list[str], timeout: int = 300):
    """Two data-parallel processes on CPU (gloo), the same DDP path `accelerate launch --multi_gpu`
    takes on GPUs (`accelerate launch --cpu` would start only one process)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "seqpo.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "SEQPO_THREADS": "1"})


def test_two_processes_data_parallel(waiting_model, train_files, tmp_path):
    """Both processes sample their share, synchronise gradients through DDP, one log and one adapter."""
    out = tmp_path / "ddp"
    proc = _torchrun(["train", "--pair", "en-zh", "--src", str(train_files[0]), "--ref", str(train_files[1]),
                      "--out", str(out), "--model", str(waiting_model), "--adapter", "none", "--few-shot", "no",
                      "--steps", "2", "--sources", "2", "--group", "4", "--max-step-tokens", "6", "--bf16", "no",
                      "--lr", "1e-3", "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = _log(out)
    assert [r["step"] for r in log] == [1, 2]
    assert log[0]["processes"] == 2 and log[0]["episodes"] == 8  # one sentence x 4 rollouts per process
    assert (out / "adapter_model.safetensors").exists()


def test_sft_two_processes_data_parallel(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"source_prefix": "The", "target_prefix": "", "segment": ""},
            {"source_prefix": "The weather is nice today.", "target_prefix": "", "segment": "今天天气很好。"}]
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows * 4), encoding="utf-8")
    out = tmp_path / "sft"
    proc = _torchrun(["sft", "--pairs", str(pairs), "--pair", "en-zh", "--out", str(out), "--model", str(tiny_model_dir),
                      "--max-steps", "2", "--batch-size", "2", "--bf16", "no", "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "adapter_model.safetensors").exists()

def test_step_stats_are_summed_by_name_and_logged_as_means():
    from types import SimpleNamespace

    from seqpo.rl.rollout import EpisodeScore
    from seqpo.rl.step_log import StepStats, log_record
    from seqpo.rl.update import Scored, UpdateSums

    class TwoProcesses:  # what accelerate's sum-reduce of two equal processes gives
        device = "cpu"

        def reduce(self, tensor, op):
            assert op == "sum" and tensor.dtype == torch.float64
            return tensor * 2

    scores = [EpisodeScore(40.0, 2.0, 3.0, 0.5, 6.0), EpisodeScore(60.0, 4.0, 5.0, 0.25, 6.0)]
    scored = Scored([], scores, [1.0, -1.0], [0.7, -0.7])
    update = UpdateSums(tokens=10, update_tokens=30, loss=0.5, kl_sum=1.0, clipped_sum=2.0, logp_gap_sum=0.1,
                        grad_norm=0.3)
    stats = StepStats.of(scored, update).reduce(TwoProcesses())
    assert stats.episodes == 4 and stats.tokens == 20 and stats.quality == 200.0
    record = log_record(7, stats, update, SimpleNamespace(tokens_processed=99), rollout_s=2.0, update_s=1.0,
                        processes=2)
    assert record == {"step": 7, "reward_mean": 0.0, "reward_std": 1.0, "quality": 50.0, "AL": 3.0, "LAAL": 4.0,
                      "wait_fraction": 0.375, "kl": 0.1, "clipped_fraction": 0.2, "logp_gap": 0.01, "loss": 1.0,
                      "tokens": 20, "update_tokens": 30, "rollout_tokens": 99, "tokens_per_s": 5.0, "rollout_s": 2.0,
                      "update_s": 1.0, "grad_norm": 0.3, "episodes": 4, "processes": 2}
