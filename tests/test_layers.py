"""The package's layers: every module imports only its own layer or the ones below, and no import
cycle exists (read from the source with `ast`, so nothing is imported or run).

Layers, lowest first (README, Layout):

0. base: io, paths, profiles, compiling, malloc, grid (patch lattice, 8-connectivity), metrics (SPEC §6),
   isolation (the structure-end test on a detection)
1. data: data/ (datasets, images, splits, synthetic sets, IRSTD-Hard)
2. models: losses, models/ (registry first: it imports no model), baselines/, zoo (builds any
   model by name; the only module that imports every model)
3. evaluation: train/checkpoint, train/evaluate, predict, score, weights, calibrate,
   onnx_backend, export, onnx_sized
4. training: train/ (config, runs, loop, ddp and the package's re-exports), finetune
5. tools: bench/, gpu_check, tables, plots, widgets
6. reproduce: reproduce/ (one module per notebook), report
7. entry points: cli, commands, __main__

An import counts in the function it sits in too, and names the module it imports: `from a.b
import c` is an import of module `a.b.c` when that is a module, else of `a.b`. Python also runs
a package's `__init__` before its submodules; that implicit edge is not counted (train/'s
`__init__` re-exports the training API, while train/checkpoint and train/evaluate sit below it).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "nairstd"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "nairstd",
            "nairstd.io",
            "nairstd.paths",
            "nairstd.profiles",
            "nairstd.protocols",
            "nairstd.compiling",
            "nairstd.malloc",
            "nairstd.grid",
            "nairstd.metrics",
            "nairstd.isolation",
        ),
    ),
    ("data", ("nairstd.data", "nairstd.data.*")),
    (
        "models",
        (
            "nairstd.losses",
            "nairstd.models",
            "nairstd.models.*",
            "nairstd.baselines",
            "nairstd.baselines.*",
            "nairstd.zoo",
        ),
    ),
    (
        "evaluation",
        (
            "nairstd.train.checkpoint",
            "nairstd.train.evaluate",
            "nairstd.probability",
            "nairstd.predict",
            "nairstd.operating",
            "nairstd.score",
            "nairstd.sweep",
            "nairstd.ood",
            "nairstd.weights",
            "nairstd.calibrate",
            "nairstd.onnx_backend",
            "nairstd.export",
            "nairstd.onnx_sized",
            "nairstd.hardneg",
        ),
    ),
    ("training", ("nairstd.train", "nairstd.train.*", "nairstd.finetune")),
    (
        "tools",
        (
            "nairstd.bench",
            "nairstd.bench.*",
            "nairstd.gpu_check",
            "nairstd.tables",
            "nairstd.plots",
            "nairstd.widgets",
        ),
    ),
    (
        "reproduce",
        ("nairstd.reproduce", "nairstd.reproduce.*", "nairstd.report", "nairstd.shipped"),
    ),
    ("entry", ("nairstd.cli", "nairstd.commands", "nairstd.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index of the module's layer: an exact name wins over a `pkg.*` pattern."""
    for exact in (True, False):
        for i, (_, patterns) in enumerate(LAYERS):
            for pattern in patterns:
                if exact and pattern == module:
                    return i
                if not exact and pattern.endswith(".*") and module.startswith(pattern[:-1]):
                    return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the README's Layout)")


def imports_in(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The nairstd modules that the source of module `name` imports (anywhere in the file)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m == "nairstd" or m.startswith("nairstd.")} - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
        for name, path in mods.items()
    }


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
        for m, deps in sorted(g.items())
        for d in sorted(deps)
        if layer_of(d) > layer_of(m)
    ]


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    upward = upward_imports(graph())
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_registry_imports_no_model_and_only_the_zoo_imports_every_model():
    g = graph()
    assert g["nairstd.models.registry"] == set()
    assert g["nairstd.losses"] == set()
    below_zoo = [m for m in g if m.startswith(("nairstd.models", "nairstd.baselines"))]
    assert not [m for m in below_zoo if "nairstd.zoo" in g[m]]
    assert {"nairstd.baselines", "nairstd.models.na_irstd"} <= g["nairstd.zoo"]


def test_the_checks_see_an_upward_import_and_a_cycle():
    """Not vacuous: a data module importing training, inside a function, is reported, and so is
    a registry that imports a model again (the circle this layout removed)."""
    g = graph()
    known = set(g)
    index = PACKAGE / "data" / "index.py"
    source = index.read_text(encoding="utf-8") + (
        "\n\ndef _late():\n    from nairstd.train import loop\n\n    return loop\n"
    )
    g["nairstd.data.index"] = imports_in(source, "nairstd.data.index", False, known)
    assert "nairstd.data.index (data) imports nairstd.train.loop (training)" in upward_imports(g)
    g = graph()
    g["nairstd.models.registry"] = imports_in(
        "import nairstd.models.na_irstd\n", "nairstd.models.registry", False, known
    )
    cycle = find_cycle(g)
    assert cycle is not None and "nairstd.models.registry" in cycle
