"""The package's import structure: the pure modules load without torch, and no two modules import
each other (directly or around a circle), counting imports inside functions too."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

METRICS = ("latency", "quality", "wer", "erasure", "resegment", "stream_latency", "yaal")
TORCH_FREE = ("seqpo.policies", *(f"seqpo.metrics.{m}" for m in METRICS), "seqpo.stream", "seqpo.prompts", "seqpo.languages",
              "seqpo.requests", "seqpo.model_steps", "seqpo.engine", "seqpo.driver")

# A meta-path finder ahead of every other one: `import torch` (or transformers, which needs it) fails.
BLOCK_TORCH = """
import importlib, sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, NoTorch())
for name in sys.argv[1:]:
    importlib.import_module(name)
print("imported", len(sys.argv) - 1)
"""


def load_import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "benchmarks" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_pure_modules_import_without_torch():
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *TORCH_FREE], capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"imported {len(TORCH_FREE)}"


def test_torch_block_works():
    """The block itself bites: a module that needs torch fails to import under it."""
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "seqpo.generation"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, timeout=120)
    assert result.returncode != 0
    assert "torch is blocked" in result.stderr


CLI_WITHOUT_TORCH = """
import sys

import seqpo.cli

assert "torch" not in sys.modules and "transformers" not in sys.modules, "importing seqpo.cli loaded torch"
seqpo.cli.build_parser().format_help()  # every command's flags, as `seqpo --help` and `seqpo eval --help` build them
assert "torch" not in sys.modules and "transformers" not in sys.modules, "building the parser loaded torch"
print("torch-free")
"""


def test_cli_starts_without_torch():
    """`seqpo --help` loads no model runtime: the settings that make the flags are torch-free and the
    commands that run a model are imported when run (seconds of start-up otherwise)."""
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": ""}
    result = subprocess.run([sys.executable, "-c", CLI_WITHOUT_TORCH], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch-free"
    shown = subprocess.run([sys.executable, "-m", "seqpo.cli", "--help"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: seqpo") and "train" in shown.stdout and "serve" in shown.stdout


def test_no_import_circles():
    graph = load_import_graph()
    built = graph.build_graph(ROOT / "src" / "seqpo")
    assert {"seqpo.prompts", "seqpo.requests"} <= built.edges["seqpo.policies.base"]
    assert graph.circles(built.edges) == []


def test_circles_found_through_function_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from .a import f  # hidden\n    return f\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    graph = load_import_graph()
    built = graph.build_graph(package)
    assert built.edges == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert graph.circles(built.edges) == [["pkg.a", "pkg.b"]]
    assert [(m, line) for m, line, _ in built.function_imports] == [("pkg.b", 2)]


def test_class_names_unique():
    """No two classes share a name anywhere in the package (a reader, or a traceback, must tell them apart)."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "src" / "seqpo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(str(path.relative_to(ROOT / "src")))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert shared == {}
