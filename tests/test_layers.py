"""The package's layers, written down once: each part imports only the parts below it.

Top to bottom (a part may import its own modules and any part on a lower row; parts on one row
do not import each other):

    cli | the package face         the command (parses, prints, calls the API); hypotune/__init__.py
    api                            the Python API
    report | run                   the report; running trials (runner, executors, worker, search)
    decide                         collecting runs, verdicts, sequential plan, audit, runs files
    study                          what a study is: model, file, tuning, prediction kinds
    store                          MLflow: tags, records, the tracker
    trainables                     the protocol, function and command trainables
    config | stats                 settings, numbers
    errors                         the errors a person reads

The command line is a face, not a layer of logic: its commands, output and server supervision
import only the API, the errors and each other; its parser also reads the settings' schema
(config) and loads the trainable whose settings become flags (trainables).

`fashion/` (the built-in CNN) plugs in through the protocol: it may import trainables, config
and errors, and nothing of the engine imports it (the engine names it only as a reference
string that a worker loads). Every import counts, at the top of a file or inside a function.

`python -m tests.test_layers [SRC]` prints the graph's figures (modules, levels, imports, and
imports that run up: to a module on the same or a higher level than the importer, where a
module's level is one above the highest module it imports at its top).
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
LAYERS = [
    ("cli", ""),
    ("api",),
    ("report", "run"),
    ("decide",),
    ("study",),
    ("store",),
    ("trainables",),
    ("config", "stats"),
    ("errors",),
]
CLI_MAY_IMPORT = {"api", "errors", "cli"}
PARSER_MAY_IMPORT = CLI_MAY_IMPORT | {"config", "trainables"}
PLUGINS = {"fashion": {"fashion", "trainables", "config", "errors"}}
RANK = {part: rank for rank, row in enumerate(LAYERS) for part in row}


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / "hypotune").rglob("*.py"))}


def imports(path: Path, name: str, known: set[str], top_only: bool = False) -> list[str]:
    """The hypotune modules `path` imports ('from hypotune import api' is hypotune.api)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else ast.walk(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "hypotune"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            if base.split(".")[0] != "hypotune":
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append(child if child in known else base)
    return [m for m in found if m != name]


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


@cache
def graph(src: Path = SRC, top_only: bool = False) -> dict[str, list[str]]:
    found = modules(src)
    return {name: imports(path, name, set(found), top_only) for name, path in found.items()}


IMPORTS = sorted({(a, b) for a, targets in graph().items() for b in targets})


def test_every_module_is_in_a_layer():
    unplaced = {part(m) for m in graph()} - set(RANK) - set(PLUGINS)
    assert not unplaced, f"parts in no layer: {unplaced}: add them to LAYERS"


@pytest.mark.parametrize("importer, imported", IMPORTS, ids=[f"{a}->{b}" for a, b in IMPORTS])
def test_an_import_goes_down_the_layers(importer, imported):
    here, there = part(importer), part(imported)
    if here in PLUGINS:
        assert there in PLUGINS[here], f"{importer} imports {imported}: {here}/ plugs in through the protocol"
        return
    assert there not in PLUGINS, f"{importer} imports {imported}: the engine never imports {there}/"
    if here == there:
        return
    assert RANK[there] > RANK[here], (
        f"{importer} ({here}, row {RANK[here]}) imports {imported} ({there}, row {RANK[there]}): "
        "an import must go down the layers"
    )


def test_the_commands_print_and_call_the_api():
    for name, targets in graph().items():
        if part(name) != "cli":
            continue
        allowed = PARSER_MAY_IMPORT if name == "hypotune.cli.parser" else CLI_MAY_IMPORT
        wrong = sorted(t for t in targets if part(t) not in allowed)
        assert not wrong, f"{name} imports {wrong}: the command line goes through the API"


def test_the_import_graph_has_no_cycle():
    """Not even through an import inside a function: each one is a dependency a reader follows."""
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in edges.get(node, []):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target] if target in path else [node, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])


def test_no_engine_module_imports_torch():
    for name, path in modules().items():
        if part(name) in PLUGINS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{name} imports torch"


def figures(src: Path = SRC) -> dict[str, int]:
    """Modules, levels, imports and imports that run up, as the module docstring defines them."""
    top = graph(src, top_only=True)
    level: dict[str, int] = {}

    def level_of(module: str) -> int:
        if module not in level:
            level[module] = 0  # a guard against a cycle at the top of files
            level[module] = 1 + max((level_of(t) for t in top.get(module, []) if t in top), default=0)
        return level[module]

    every = graph(src)
    pairs = {(a, b) for a, targets in every.items() for b in targets if b in every}
    up = sum(1 for a, b in pairs if level_of(b) >= level_of(a))
    return {"modules": len(every), "levels": max(map(level_of, every)), "imports": len(pairs), "upward": up}


if __name__ == "__main__":
    print(figures(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC))
