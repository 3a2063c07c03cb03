"""The documentation works as written: the README quickstart's commands run (on the tiny model),
the Python API example runs, docs/cli.md matches the parser, and every relative link resolves."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "src/seqpo/models").glob("*/README.md")])


def section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def quickstart_commands() -> list[str]:
    blocks = code_blocks(section((ROOT / "README.md").read_text(encoding="utf-8"), "Quickstart"), "bash")
    assert blocks, "the quickstart has no bash block"
    return [c for block in blocks for c in commands(block)]


def shell_prelude(model: Path) -> str:
    """Run `seqpo` from this interpreter's environment, always on the tiny model."""
    bindir = Path(sys.executable).parent
    return (f'export PATH="{bindir}:$PATH"\n'
            f'seqpo() {{ if [ "$1" = data ]; then command seqpo "$1" "$2" --model "{model}" "${{@:3}}"; '
            f'else command seqpo "$1" --model "{model}" "${{@:2}}"; fi; }}\n')


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder holding what a fresh clone's quickstart may read (tests/fixtures)."""
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart_runs_as_written(tiny_model_dir, workdir):
    cmds = quickstart_commands()
    assert cmds[0] == "source .venv/bin/activate"
    serve = [c for c in cmds if c.startswith("seqpo serve")]
    batch = [c for c in cmds[1:] if c not in serve]
    assert any(c.startswith("seqpo eval") for c in batch) and any("--json" in c for c in batch)
    env = {**os.environ, "TERM": "dumb", "SEQPO_THREADS": "1"}
    outputs = []
    for cmd in batch:  # one at a time, so a failure names its command
        run = subprocess.run(["bash", "-c", shell_prelude(tiny_model_dir) + "set -eo pipefail\n" + cmd],
                             cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{cmd}\n{run.stderr[-2000:]}"
        outputs.append((cmd, run.stdout))
    for cmd, out in outputs:
        if "--json" in cmd:
            events = [json.loads(line) for line in out.splitlines() if line.strip()]
            assert events[-1]["type"] == "done" and {e["type"] for e in events[:-1]} <= {"write", "wait"}
        if cmd.startswith("seqpo eval"):
            scores = json.loads(out.strip().splitlines()[-1])
            assert {"BLEU", "chrF", "AL", "LAAL"} <= set(scores)
            out_dir = workdir / re.search(r"--out (\S+)", cmd).group(1)
            assert len((out_dir / "instances.jsonl").read_text(encoding="utf-8").splitlines()) == 5
            assert (out_dir / "scores.json").is_file()
    for cmd in serve:  # a server runs until stopped: start it, ask /health, stop it
        port = free_port()
        proc = subprocess.Popen(["bash", "-c", shell_prelude(tiny_model_dir) + f"{cmd} --port {port}"], cwd=workdir,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group: bash and the server stop together
        try:
            deadline, health = time.time() + 300, None
            while time.time() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        health = json.load(r)
                    break
                except OSError:
                    time.sleep(0.5)
            assert health is not None, f"{cmd}: no /health answer\n{proc.stderr.read() if proc.poll() is not None else ''}"
            assert health["status"] == "ok" and health["worker"] == "ok"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_api_example_runs(tiny_model_dir, workdir):
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    (block,) = code_blocks(section(text, "Example"), "python")
    assert "MODEL = None " in block
    script = workdir / "example.py"
    script.write_text(block.replace("MODEL = None ", f"MODEL = {str(tiny_model_dir)!r} ", 1), encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SEQPO_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 3  # two sentences, then the BLEU of the evaluation
    float(lines[-1])
    assert len((workdir / "api-eval" / "instances.jsonl").read_text(encoding="utf-8").splitlines()) == 5


def test_cli_reference_is_current():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from gen_cli import render
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), \
        "docs/cli.md is out of date: python docs/gen_cli.py > docs/cli.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_github_anchor():
    assert github_anchor("Training in the slots format (`--format slots`)") == \
        "training-in-the-slots-format---format-slots"
    assert github_anchor("Significance: SeqPO vs SFT") == "significance-seqpo-vs-sft"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_internal_links_resolve(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"
