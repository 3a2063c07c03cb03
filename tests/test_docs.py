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


# -- the README's figures come from docs/results.md ------------------------------------------------

def readme_figures(text: str) -> list[str]:
    """The figures a Markdown text quotes: every decimal number (22.4, 0.38, -4.70, 18.09) and every
    whole number given in % or ms (95%, 2290 ms), in prose and tables. Not figures: fenced code
    blocks and inline code (commands, flags, file names), link targets, arXiv identifiers
    (2505.20622) and version numbers (x.y.z anywhere; the number after Python or License)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)\s]*\)", "]", text)
    text = re.sub(r"arXiv \d{4}\.\d{4,5}", "", text)
    text = re.sub(r"\d+(?:\.\d+){2,}", "", text)
    text = re.sub(r"\b(?:Python|License) \d+(?:\.\d+)?(?: \(\d+(?:\.\d+)?[^)]*\))?", "", text)
    return re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])|(?<![\w.])\d+(?= ?(?:%|ms\b))", text)


def quoted_in(figure: str, numbers: list[str]) -> bool:
    """`figure` is one of `numbers`, or one of them rounded to the figure's decimals (22.4 quotes
    22.44, 0.38 quotes 0.376); never a number with fewer decimals than the figure."""
    from decimal import ROUND_HALF_UP, Decimal

    want = Decimal(figure)
    places = -want.as_tuple().exponent
    step = Decimal(1).scaleb(-places)
    return any(-Decimal(n).as_tuple().exponent >= places and Decimal(n).quantize(step, ROUND_HALF_UP) == want
               for n in numbers)


def test_readme_figures_rule():
    text = ("Python 3.11 (3.10 or later works); SimulEval 1.1.4 to 1e-6; `pip install torch==2.13.0`; "
            "[arXiv 2505.20622](https://arxiv.org/abs/2505.20622); Apache License 2.0; first 100 lines;\n"
            "```bash\nseqpo eval --limit 0.5\n```\n"
            "WER 22.4%, 0.38 s per second, AL -4.70, [-2.12, +3.52], 95% interval | 18.09 | 2290 ms |")
    assert readme_figures(text) == ["22.4", "0.38", "4.70", "2.12", "3.52", "95", "18.09", "2290"]
    assert quoted_in("22.4", ["22.44"]) and quoted_in("0.38", ["0.376"]) and quoted_in("8.00", ["8.00"])
    assert quoted_in("26", ["25.99"]) and not quoted_in("22.4", ["22.5", "22"]) and not quoted_in("8.00", ["8"])


def test_readme_figures_are_in_results():
    """Every figure the README quotes is in docs/results.md (exactly, or more precisely there), so
    the short version cannot drift from the tables it summarises."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    numbers = re.findall(r"\d+(?:\.\d+)?", (ROOT / "docs" / "results.md").read_text(encoding="utf-8"))
    figures = readme_figures(readme)
    assert len(figures) > 50  # the results tables are in
    missing = sorted({f for f in figures if not quoted_in(f, numbers)}, key=float)
    assert not missing, f"README.md quotes figures that docs/results.md does not have: {missing}"


def test_no_instructions_a_user_cannot_follow():
    """seqpo is not on the package index (extras install from the clone: pip install -e '.[speech]'),
    and MISSION.md is not in the repository (cite the papers)."""
    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "docs").glob("*.md"),
             *[p for d in ("src", "recipes", "benchmarks") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".sh", ".bash", ".md", ".js", ".html")]]
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in files
           for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if re.search(r"pip install ['\"]?seqpo\[|MISSION\.md", line)]
    assert not bad, f"pip install seqpo[...] or MISSION.md in {bad}"


def test_top_level_help_lists_every_policy():
    from seqpo.cli import build_parser
    from seqpo.policies import POLICIES

    text = " ".join(build_parser().format_help().split())
    assert all(p.summary and f"{p.name} ({p.summary})" in text for p in POLICIES)
