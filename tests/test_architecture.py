"""The package's layers (docs/ARCHITECTURE.md 1): no module imports a layer above its own, no
module-level import cycle, no library module imports the command line, and imports inside
function bodies only where a comment says why."""

from __future__ import annotations

import ast
from pathlib import Path

import latentface

PACKAGE = Path(latentface.__file__).parent

# (prefix, layer); the longest matching prefix wins.
LAYERS = [
    ("latentface", 0),
    ("latentface.errors", 0),
    ("latentface.util", 0),
    ("latentface.boxes", 1),
    ("latentface.anchors", 1),
    ("latentface.codec", 1),
    ("latentface.data", 2),
    ("latentface.model", 3),
    ("latentface.loss", 3),
    ("latentface.checkpoint", 3),
    ("latentface.viz", 3),
    ("latentface.metrics", 4),
    ("latentface.formats", 4),
    ("latentface.inference", 5),
    ("latentface.training", 6),
    ("latentface.tools", 7),
    ("latentface.cli", 7),  # the applications: tools and the command line sit side by side
    # facades that keep stable public names at their old paths: re-exports only
    ("latentface.detect", 9),
    ("latentface.evaluate", 9),
    ("latentface.train", 9),
]


def layer(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path):
    """(imported module, line, at module level?, the source line) for every latentface import."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    type_only = {
        id(n)
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # annotations only: never executed
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module.startswith("latentface"):
                # `from latentface import viz` imports a submodule
                names += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (PACKAGE.parent / (f"{node.module}.{a.name}".replace(".", "/") + ".py")).exists()
                ]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "latentface" or name.startswith("latentface."):
                yield name, node.lineno, id(node) in top_level, lines[node.lineno - 1]


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_layer_above_its_own():
    wrong = []
    for name, path in MODULES.items():
        for imported, line, _, _ in internal_imports(path):
            if layer(imported) > layer(name):
                wrong.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {name} (layer {layer(name)}) "
                    f"imports {imported} (layer {layer(imported)})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_even_through_function_bodies():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imported, _, _, _ in internal_imports(path):
            if imported in graph and imported != name:
                graph[name].add(imported)
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle
    # unless the submodule imports the package back, which the graph keeps
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_libraries_never_import_the_command_line():
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for name, path in MODULES.items()
        if layer(name) < layer("latentface.tools")
        for imported, line, _, _ in internal_imports(path)
        if imported.startswith("latentface.cli")
    ]
    assert not wrong, wrong


def test_imports_inside_functions_say_why():
    """An internal import inside a function dodges a cycle unless it names its reason (optional
    dependency, start-up time) in a comment on its line or the line above."""
    unexplained = []
    for path in MODULES.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for _, line, top, text in internal_imports(path):
            if top:
                continue
            above = lines[line - 2] if line >= 2 else ""
            if "#" not in text and not above.strip().startswith("#"):
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}")
    assert not unexplained, "\n".join(unexplained)


def test_layer_table_covers_every_module_and_the_checker_sees_imports():
    assert all(layer(name) >= 0 for name in MODULES)
    assert layer("latentface.metrics.wider") == 4 and layer("latentface.inference.detector") == 5
    imports = {i for i, *_ in internal_imports(PACKAGE / "cli" / "__init__.py")}
    assert "latentface.errors" in imports
