"""The project's modules import one way: no cycle, counting the imports inside functions, and the Beam
graph is imported only by the driver."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where each installed package lives in the checkout (pyproject.toml's package-dir).
ROOTS = {"videonet": REPO / "videonet", "videonet.pipelines": REPO / "pipelines"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at the top or inside a function (``from x import y``
    counts y when it is a module, else x)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import videonet.a.b.c` names a module or its package
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle(graph):
    assert "videonet.curation.run" in graph and sum(map(len, graph.values())) > 100  # the walk found the project
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(exc.args[1]))


def test_only_the_driver_imports_the_graph(graph):
    assert {name for name, imported in graph.items() if "videonet.pipelines.curate" in imported} == {
        "videonet.curation.run"}


def test_the_settings_import_no_stage_logic_beam_or_torch():
    """``videonet.curation.settings`` is what the command line reads: stage settings, nothing that runs."""
    path = REPO / "videonet" / "curation" / "settings.py"
    top = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
           if isinstance(node, ast.Import) for alias in node.names}
    top |= {(node.module or "").split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)}
    assert not top & {"apache_beam", "torch", "pandas"}, top


def test_the_run_directory_is_the_ground_floor(graph):
    """``curation/rundir`` (paths, schemas, statuses, files, their integrity) imports no stage; the stages import it."""
    floor = {name for name in graph if name.startswith("videonet.curation.rundir")}
    assert floor == {f"videonet.curation.rundir{sub}" for sub in ("", ".files", ".integrity")}
    assert all(graph[name] <= floor | {"videonet.errors"} for name in floor), {n: graph[n] for n in floor}
    stages = ("search", "candidates", "judge.verdicts", "write.shards", "report")
    assert all(any(m in floor for m in graph[f"videonet.curation.{stage}"]) for stage in stages)
