"""`seqpo eval` end to end on the tiny model: outputs, resume, and bad input."""

import json
import subprocess
import sys

import pytest

from seqpo.cli import main

from omnisteval_cli import omnisteval_cli

FIELDS = {"index", "source", "prediction", "delays", "elapsed", "source_length", "reference"}


def eval_args(model, src, ref, out, *extra):
    return ["eval", "--pair", "en-zh", "--src", str(src), "--ref", str(ref), "--model", str(model),
            "--out", str(out), "--quiet", *extra]


def test_eval_writes_instances_and_scores(tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "wait-k", "--k", "2")) == 0
    lines = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in lines) == [0, 1, 2, 3, 4]
    for r in lines:
        assert FIELDS <= r.keys()
        assert len(r["delays"]) == len(r["elapsed"]) == r["prediction_length"]
    empty = next(r for r in lines if r["index"] == 2)
    assert empty["prediction"] == "" and empty["delays"] == []
    scores = json.loads((out / "scores.json").read_text())
    for key in ("BLEU", "chrF", "AL", "LAAL", "DAL", "AP"):
        assert isinstance(scores[key], (int, float))
    assert scores["signature"]["k"] == 2 and scores["signature"]["latency_unit"]["target"] == "char"
    assert scores["latency_scored_sentences"] <= 4
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["BLEU"] == scores["BLEU"]


@pytest.mark.parametrize("policy", ["wait-k", "offline"])
def test_eval_yaal_is_what_the_omnisteval_command_prints(policy, tiny_model_dir, en_zh_files, tmp_path):
    src, ref = en_zh_files
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", policy, "--k", "1")) == 0
    scores = json.loads((out / "scores.json").read_text())
    command = scores["signature"]["omnisteval"]
    assert command.startswith(f"omnisteval shortform --hypothesis_file {out}/omnisteval/instances.jsonl")
    assert "--char_level" in command and scores["signature"]["YAAL"].startswith("YAAL|omnisteval:0.1.10|unit:char")
    theirs = omnisteval_cli(command)
    assert scores["YAAL"] == pytest.approx(theirs["YAAL (CU)"], abs=1e-3)
    assert scores["YAAL_CA"] == pytest.approx(theirs["YAAL (CA)"], abs=1e-3)
    if policy == "offline":  # every unit comes after the source ended: YAAL has nothing to average
        assert scores["YAAL"] is None and scores["yaal_scored_sentences"] == 0
    else:
        assert scores["yaal_scored_sentences"] >= 1


def test_eval_resumes_after_a_kill(tiny_model_dir, en_zh_files, tmp_path):
    src, ref = en_zh_files
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "offline", "--limit", "3")) == 0
    path = out / "instances.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    # simulate a kill in the middle of writing the last line
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "offline")) == 0
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3, 4]
    assert records[0] == first  # finished work was kept, not redone


def test_eval_refuses_to_mix_settings_in_one_folder(tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "offline", "--limit", "1")) == 0
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "llm", "--limit", "1")) == 2
    assert "other settings (policy" in capsys.readouterr().err


@pytest.mark.parametrize("problem, expected", [
    ("missing", "source file not found"),
    ("mismatch", "has 5 lines but"),
    ("pair", "unknown language 'xx'"),
    ("unsupported", "not supported"),
    ("config", "cannot parse config file"),
    ("model", "model path not found"),
])
def test_bad_input_is_one_line_and_nonzero(problem, expected, tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    args = eval_args(tiny_model_dir, src, ref, tmp_path / "o")
    if problem == "missing":
        args[args.index(str(src))] = str(tmp_path / "nope.en")
    elif problem == "mismatch":
        short = tmp_path / "short.zh"
        short.write_text("一\n二\n", encoding="utf-8")
        args[args.index(str(ref))] = str(short)
    elif problem == "pair":
        args[args.index("en-zh")] = "en-xx"
    elif problem == "unsupported":
        args[args.index("en-zh")] = "de-zh"
    elif problem == "config":
        bad = tmp_path / "bad.yaml"
        bad.write_text("policy: [unclosed\n")
        args += ["--config", str(bad)]
    elif problem == "model":
        args[args.index(str(tiny_model_dir))] = str(tmp_path / "no-model")
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and expected in err


def test_config_file_sets_defaults_and_flags_win(tiny_model_dir, en_zh_files, tmp_path):
    src, ref = en_zh_files
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("policy: wait-k\nk: 5\nlimit: 2\n")
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--config", str(cfg), "--k", "4")) == 0
    sig = json.loads((out / "scores.json").read_text())["signature"]
    assert sig["policy"] == "wait-k" and sig["k"] == 4
    assert json.loads((out / "scores.json").read_text())["sentences"] == 2


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "seqpo.cli", "eval", "--pair", "en-zh", "--src",
                           str(tmp_path / "x"), "--ref", str(tmp_path / "y"), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"seqpo eval: error: source file not found: {tmp_path / 'x'}"


def test_corrupt_model_is_one_line(tiny_model_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["translate", "--model", str(broken), "hello"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("seqpo translate: error: cannot load model")


@pytest.mark.parametrize("command", [[], ["eval"], ["translate"]])
def test_help_explains_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: seqpo" in text and len(text.splitlines()) > 8


@pytest.mark.parametrize("text, expected", [
    ("chunk: '2'\nlimit: 1\n", None),  # a quoted number is converted like a flag
    ("policy: waitk\n", "must be one of offline, wait-k, llm"),
    ("chunk: two\n", "setting 'chunk' must be int"),
    ("few_shot: yes\nlimit: 1\n", None),  # YAML's boolean yes means the choice 'yes'
    ("colour: red\n", "unknown setting 'colour'"),
])
def test_config_values_are_typed_and_checked(text, expected, tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    code = main(eval_args(tiny_model_dir, src, ref, out, "--config", str(cfg), "--policy", "offline")
                if "policy" not in text else eval_args(tiny_model_dir, src, ref, out, "--config", str(cfg)))
    err = capsys.readouterr().err.strip()
    if expected is None:
        assert code == 0, err
        sig = json.loads((out / "scores.json").read_text())["signature"]
        assert sig["chunk"] == (2 if "chunk" in text else 1)
        if "few_shot" in text:
            assert sig["few_shot"] is True
    else:
        assert code == 2 and len(err.splitlines()) == 1 and expected in err


def test_resume_refuses_another_decoding_mode(tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "offline", "--limit", "1",
                          "--decoding", "append")) == 0
    assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "offline")) == 2
    assert "other settings (decoding" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["append", "slots"])
def test_eval_early_decisions_write_the_same_instances(tiny_model_dir, en_zh_files, tmp_path, mode):
    """--lookahead/--write-ahead change only how many passes eval takes, not what it writes."""
    src, ref = en_zh_files
    runs = {}
    for name, extra in (("stepwise", []), ("early", ["--lookahead", "4", "--write-ahead"])):
        out = tmp_path / name
        assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "llm", "--decoding", mode,
                              "--limit", "3", *extra)) == 0
        lines = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
        for line in lines:  # timings differ; sentences may also finish in another order
            line.pop("elapsed", None)
            line["metric"] = {k: v for k, v in line["metric"].items() if not k.endswith("_CA")}
            for step in line["steps"]:
                step.pop("elapsed_ms")
        runs[name] = sorted(lines, key=lambda x: x["index"])
    assert runs["early"] == runs["stepwise"] and len(runs["early"]) == 3


def test_eval_cached_decoding_writes_the_reencode_instances(tiny_model_dir, en_zh_files, tmp_path):
    """--decoding cached is re-encoding with prefix caching: the same translations and delays."""
    src, ref = en_zh_files
    runs = {}
    # re-encode one request at a time: `generate` would apply the tiny model's 64-token sliding
    # window by cache index, which left padding shifts (the cached engine applies it by position)
    for mode, batch in (("reencode", "1"), ("cached", "8")):
        out = tmp_path / mode
        assert main(eval_args(tiny_model_dir, src, ref, out, "--policy", "llm", "--few-shot", "no", "--decoding", mode,
                              "--batch-size", batch, "--limit", "4")) == 0
        lines = [json.loads(x) for x in (out / "instances.jsonl").read_text().splitlines()]
        runs[mode] = sorted(((x["index"], x["prediction"], x["delays"]) for x in lines))
    assert runs["cached"] == runs["reencode"] and len(runs["cached"]) == 4


def test_negative_lookahead_is_one_line(tiny_model_dir, en_zh_files, tmp_path, capsys):
    src, ref = en_zh_files
    assert main(eval_args(tiny_model_dir, src, ref, tmp_path / "x", "--lookahead", "-1")) == 2
    assert capsys.readouterr().err.strip() == "seqpo eval: error: --lookahead must be 0 (off) or more"
