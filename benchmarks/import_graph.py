"""The package's import graph: module count, import circles, imports inside functions, largest modules.

    python benchmarks/import_graph.py [src/seqpo]

Every `import` / `from ... import` of a seqpo module is an edge, at module level or inside a
function alike (an import inside a function only hides a circle, it does not remove it); imports
under `if TYPE_CHECKING:` never run and are left out. A circle is a strongly connected component
of more than one module (Tarjan). Prints Markdown; `tests/test_imports.py` loads this file by path.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "seqpo"


@dataclass
class ImportGraph:
    lines: dict[str, int]  # module -> lines of source
    edges: dict[str, set[str]]  # module -> seqpo modules it imports
    function_imports: list[tuple[str, int, str]] = field(default_factory=list)  # (module, line, statement)


def module_names(package_dir: Path) -> dict[str, Path]:
    root = package_dir.name
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([root, *parts])] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(import node, inside a function) for every import that runs, skipping TYPE_CHECKING blocks."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(sub, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                       ast.Lambda)))
    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        candidates = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
    targets = set()
    for name in candidates:
        # the most specific seqpo module the name reaches (`from .a import b` reaches a.b if b is a module)
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            targets.add(name)
    if isinstance(node, ast.ImportFrom):
        # `from .a import f, g` is one edge to a, not to a's package as well
        specific = {t for t in targets if not any(o != t and o.startswith(t + ".") for o in targets)}
        targets = specific
    return targets


def build_graph(package_dir: Path = PACKAGE_DIR) -> ImportGraph:
    names = module_names(package_dir)
    known = set(names)
    graph = ImportGraph(lines={}, edges={})
    for module, path in names.items():
        source = path.read_text(encoding="utf-8")
        graph.lines[module] = len(source.splitlines())
        graph.edges[module] = set()
        is_package = path.name == "__init__.py"
        for node, in_function in _imports(ast.parse(source, filename=str(path))):
            if in_function:
                graph.function_imports.append((module, node.lineno, ast.unparse(node)))
            graph.edges[module] |= _targets(node, module, is_package, known) - {module}
    return graph


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def markdown(graph: ImportGraph) -> str:
    found = circles(graph.edges)
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| modules | {len(graph.lines)} |",
        f"| import circles | {len(found)} |",
        f"| imports inside functions | {len(graph.function_imports)} |",
        f"| lines (all modules) | {sum(graph.lines.values())} |",
    ]
    out = rows
    if found:
        out += ["", "| circle (modules in one strongly connected component) |", "|---|"]
        out += [f"| {' <-> '.join(component)} |" for component in found]
    out += ["", "| module (top 10 by lines) | lines |", "|---|---|"]
    largest = sorted(graph.lines.items(), key=lambda item: (-item[1], item[0]))[:10]
    out += [f"| {module} | {n} |" for module, n in largest]
    return "\n".join(out)


def main() -> None:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_DIR
    print(markdown(build_graph(package_dir)))


if __name__ == "__main__":
    main()
