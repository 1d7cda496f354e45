"""The layering of ``pipeline``, checked from the source with :mod:`ast` (nothing is imported).

``pipeline`` is a flow of stages, each a sub-package that builds only on the ones before it
(:data:`LAYERS`, lowest first), on top of a few shared top-level modules (:data:`SHARED`).
``training`` builds on the scanner, never the other way round, except for ``pipeline.cli``:
the command line is where the two sides meet. ``training`` itself is laid out by job
(:data:`TRAINING_LAYERS`, lowest first), with only its command line at its top. Keeping this
order keeps each stage testable and reusable on its own and stops import cycles creeping in;
these tests fail on the first import that breaks it, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "training")
SHARED = ("errors", "atomic", "storage", "schema", "config", "checkpoint")
LAYERS = ("video", "faces", "signals", "scoring", "session", "links", "run", "reports", "cli")
# training's jobs, lowest first: where data comes from, how a model is measured, how it is
# fitted (with the measurements), what a shipped model's card says; its cli on top of them all
TRAINING_LAYERS = ("data", "measure", "fit", "cards")
TRAINING_LOOSE = ("training", "training.cli")  # the only modules at training's top


class Import(NamedTuple):
    source: str  # the importing module
    where: str  # its file and line, for messages
    target: str  # the imported module (or the name it was imported from)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of ``pipeline`` and ``training`` by dotted name."""
    files = (p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")))
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = source.split(".")[: None if is_package else -1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    # ``from pipeline.run import scan`` imports the module pipeline.run.scan
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def _imports() -> list[Import]:
    """Every import of a ``pipeline`` or ``training`` module, at module level or inside functions."""
    modules = _modules()
    known = set(modules)
    found = []
    for source, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                for target in _targets(node, source, path.name == "__init__.py", known):
                    if target.split(".")[0] in PACKAGES:
                        found.append(Import(source, where, target))
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> int | None:
    """The position of ``module``'s sub-package in :data:`LAYERS`; None outside them."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if parts[0] == "pipeline" and len(parts) > 1 and parts[1] in LAYERS else None


def _training_layer(module: str) -> int | None:
    """The position of ``module``'s job in :data:`TRAINING_LAYERS`; the cli after them all."""
    parts = module.split(".")
    if parts[0] != "training" or len(parts) < 2:
        return None
    return TRAINING_LAYERS.index(parts[1]) if parts[1] in TRAINING_LAYERS else len(TRAINING_LAYERS)


def _report(bad: list[Import]) -> str:
    return "\n".join(f"  {i.where}: {i.target}" for i in bad)


def test_only_the_cli_imports_training():
    bad = [
        i
        for i in _imports()
        if _in(i.source, "pipeline") and not _in(i.source, "pipeline.cli") and _in(i.target, "training")
    ]
    assert not bad, f"only pipeline/cli may import training:\n{_report(bad)}"


def test_shared_modules_import_only_shared_modules():
    shared = {"pipeline", *(f"pipeline.{m}" for m in SHARED)}
    bad = [i for i in _imports() if i.source in shared and _in(i.target, "pipeline") and i.target not in shared]
    assert not bad, f"the shared modules {', '.join(SHARED)} may import only each other:\n{_report(bad)}"


def test_no_layer_imports_a_later_one():
    bad = [
        i
        for i in _imports()
        if (low := _layer(i.source)) is not None and (high := _layer(i.target)) is not None and high > low
    ]
    assert not bad, f"a stage imports a later one (order: {' < '.join(LAYERS)}):\n{_report(bad)}"


def test_training_is_laid_out_by_job_and_no_job_imports_a_later_one():
    loose = [
        m for m in _modules() if _in(m, "training") and m.count(".") < 2 and m.split(".")[-1] not in TRAINING_LAYERS
    ]
    assert sorted(loose) == sorted(TRAINING_LOOSE), f"modules at training's top beyond its cli: {loose}"
    for job in TRAINING_LAYERS:
        doc = ast.get_docstring(ast.parse((ROOT / "training" / job / "__init__.py").read_text()))
        assert doc, f"training/{job}/__init__.py must say what question the job answers"
    bad = [
        i
        for i in _imports()
        if (low := _training_layer(i.source)) is not None
        and (high := _training_layer(i.target)) is not None
        and high > low
    ]
    assert not bad, f"a training job imports a later one (order: {' < '.join(TRAINING_LAYERS)} < cli):\n{_report(bad)}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:  # every import of path[-1] explored: no cycle through it
                finished = path.pop()
                on_path.remove(finished)
                done.add(finished)
                stack.pop()
                continue
            if nxt in on_path:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in done and nxt in graph:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for i in imports:
        if i.target in graph and i.target != i.source:
            graph[i.source].add(i.target)
    return graph


def test_no_import_cycle():
    cycle = _find_cycle(_graph(_imports()))
    assert cycle is None, f"import cycle (module level and lazy imports): {' -> '.join(cycle or [])}"


def test_sub_packages_are_the_documented_stages():
    found = {d.name for d in (ROOT / "pipeline").iterdir() if d.is_dir() and d.name != "__pycache__"}
    assert found == set(LAYERS), (
        f"sub-packages of pipeline: unexpected {sorted(found - set(LAYERS))}, missing {sorted(set(LAYERS) - found)};"
        " a new stage goes into LAYERS in tests/test_layout.py at its place in the flow"
    )
    undocumented = [
        name
        for name in LAYERS
        if not (init := ROOT / "pipeline" / name / "__init__.py").is_file()
        or not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert not undocumented, f"these sub-packages need an __init__.py with a docstring: {undocumented}"
