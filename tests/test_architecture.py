"""The package's shape: layers that import only downwards, no cycles, no hidden imports, no
module reading another module's private names (see docs/architecture.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "anyfast_async"

#: The SDK's modules from the bottom up: each may import only modules before it.
LAYERS = [
    "anyfast_async._version",
    "anyfast_async._aio",
    "anyfast_async._failures",
    "anyfast_async._models",
    "anyfast_async._exceptions",
    "anyfast_async._updates",
    "anyfast_async._config",
    "anyfast_async._phases",
    "anyfast_async._telemetry",
    "anyfast_async._requests",
    "anyfast_async._decode",
    "anyfast_async._transport",
    "anyfast_async._retry",
    "anyfast_async._budget",
    "anyfast_async._store",
    "anyfast_async._redis",
    "anyfast_async._engine",
    "anyfast_async._scheduler",
    "anyfast_async._fleet",
    "anyfast_async._download",
    "anyfast_async._watch",
    "anyfast_async._client_create",
    "anyfast_async._client_watch",
    "anyfast_async._client",
    "anyfast_async",
    "anyfast_async._cli_batch",
    "anyfast_async._cli",
    "anyfast_async.__main__",
]
TESTING = "anyfast_async.testing"
#: The fake server's modules from the bottom up.
TESTING_LAYERS = [
    "anyfast_async.testing._virtual",
    "anyfast_async.testing._wire",
    "anyfast_async.testing._lifecycle",
    "anyfast_async.testing._providers",
    "anyfast_async.testing._faults",
    "anyfast_async.testing._create_check",
    "anyfast_async.testing._files",
    "anyfast_async.testing._server",
    "anyfast_async.testing",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imported(
    name: str, tree: ast.Module, known: set[str]
) -> Iterator[tuple[str, ast.Import | ast.ImportFrom]]:
    """(package module imported, the import node) for every import in ``tree``, wherever it
    stands (inside ``if TYPE_CHECKING:`` too: a layer is a layer for the type checker as
    well)."""
    is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
    here = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "anyfast_async":
                    yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.split(".")[0] == "anyfast_async":
                target = node.module
            else:
                continue
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            yield from ((sub, node) for sub in submodules)
            if len(submodules) < len(node.names):
                yield target, node


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {
        name: {target for target, _ in imported(name, tree, known)} - {name}
        for name, tree in trees.items()
    }


def test_every_module_has_a_layer() -> None:
    """Each module is placed in a layer list (decide where a new one goes)."""
    assert set(graph()) == set(LAYERS) | set(TESTING_LAYERS)


def test_layers_import_only_downwards() -> None:
    """A module imports only the modules below it; of the SDK, only the CLI (for its demo)
    imports ``testing``. Inside ``testing`` too, imports go down."""
    found = graph()
    upward = [
        f"{name} imports {target}"
        for layers in (LAYERS, TESTING_LAYERS)
        for index, name in enumerate(layers)
        for target in sorted(found[name])
        if target not in layers[:index]
        and not (name == "anyfast_async._cli" and target.startswith(TESTING))
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    """The import graph of the whole package, ``testing`` included, has no cycle."""
    found = graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(found.get(name, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(found):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_testing_imports_nothing_of_the_sdk() -> None:
    """``anyfast_async.testing`` stands alone: a fake that shared the client's code could
    agree with its bugs."""
    found = graph()
    leaks = [
        f"{name} imports {target}"
        for name, targets in found.items()
        if name.startswith(TESTING)
        for target in targets
        if not target.startswith(TESTING)
    ]
    assert leaks == []


def test_no_function_level_import_of_the_package() -> None:
    """Package modules are imported at the top of a module, never inside a function (which
    would hide a cycle); optional dependencies (rich) may be imported late."""
    trees = modules()
    known = set(trees)
    hidden: list[str] = []
    for name, tree in trees.items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            inner = ast.Module(body=function.body, type_ignores=[])
            hidden += [
                f"{name}:{node.lineno} imports {target}"
                for target, node in imported(name, inner, known)
            ]
    assert hidden == []


def defined_private_names(tree: ast.Module) -> set[str]:
    """The underscore names a module defines: functions, classes, variables, attributes it
    assigns, class-level annotations and slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


#: Private names read on something other than ``self`` or ``cls``, each inside the module that
#: defines them, with the reason.
FRIENDS = {
    # The server serves a FakeTask through this module's function, not a public method that
    # users of FakeTask would see.
    ("anyfast_async.testing._lifecycle", "_serve"),
    # AnyFast.with_options builds a client around a derived engine, without __init__.
    ("anyfast_async._client", "_engine"),
    # Engine.derive sets up the copy of itself that it returns.
    ("anyfast_async._engine", "_owner"),
    ("anyfast_async._engine", "_request_timeout"),
}


def test_no_module_reads_another_modules_private_names() -> None:
    """A ``_name`` is read only in the module that defines it, and only on ``self`` or
    ``cls`` (a few listed exceptions): no ``from ._x import _y``, no ``thing._y``."""
    trees = modules()
    crossings: list[str] = []
    for name, tree in trees.items():
        own = defined_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "anyfast_async" in (node.module or "")
            ):
                crossings += [
                    f"{name}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if node.attr not in own or not (on_self or (name, node.attr) in FRIENDS):
                    crossings.append(f"{name}:{node.lineno} reads .{node.attr}")
    assert crossings == []


@pytest.mark.parametrize("name", LAYERS[1:])
def test_a_checked_module_really_is_imported(name: str) -> None:
    """The layer list names real modules that something imports (the checks above would
    otherwise pass on a list that no longer matches the package)."""
    found = graph()
    importers = [other for other, targets in found.items() if name in targets]
    assert importers or name in ("anyfast_async", "anyfast_async.__main__")
