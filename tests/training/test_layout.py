"""The training package's shape: the core imports no task, tasks import no other task, no cycles."""

import ast
from pathlib import Path

import training
from training.tasks import TASKS

ROOT = Path(training.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each training module's imports of other training modules (top level and in functions)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[_module_name(path)] = {name for name in found if name.startswith("training.")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, or [] (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        stack.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                return [*stack[stack.index(imported) :], imported]
            if imported in graph and imported not in state and (found := visit(imported)):
                return found
        stack.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_training_has_no_import_cycle() -> None:
    assert _cycle(_imports()) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {
        "training.a": {"training.b"},
        "training.b": {"training.c"},
        "training.c": {"training.a"},
    }
    assert _cycle(graph) == ["training.a", "training.b", "training.c", "training.a"]


def test_core_imports_no_task_and_tasks_import_no_other_task() -> None:
    packages = {f"training.{name}" for name in ("classification", "detection")}
    for module, imported in _imports().items():
        own = next((package for package in packages if module.startswith(package)), None)
        allowed = {own} if own else set()
        others = {
            name for name in imported for package in packages - allowed if name.startswith(package)
        }
        if module.startswith("training.core"):
            assert not others, f"{module} imports a task: {others}"
        elif own is not None:
            assert not others, f"{module} ({own}) imports another task: {others}"


def test_every_registered_task_lives_in_its_own_package() -> None:
    for task in TASKS.values():
        assert task.train.__module__.split(".")[:2] == task.export_run.__module__.split(".")[:2]
        assert task.evaluate.__module__.split(".")[:2] == task.train.__module__.split(".")[:2]
