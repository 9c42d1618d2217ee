"""The producer's modules depend in one direction, and none reaches into another's privates.

Read from the source with ``ast`` (nothing is imported): every import counts, at module
level, inside a function or under ``TYPE_CHECKING`` — a cycle hidden in a lazy import is
still a cycle a reader has to hold in their head. The layering the package doc promises
(state at the bottom, then the wire format, the recorder, the decorators on top) holds
when this graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> import prefix (the package-dir mapping in setup.py)
PARTS = {"producer": "metatrail.producer", "schemas": "metatrail.schemas", "metatrail": "metatrail"}


def _modules(folder: str) -> dict[str, Path]:
    prefix = PARTS[folder]
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT / folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        found[".".join([prefix, *parts])] = path
    return found


PRODUCER = _modules("producer")
ALL = {**_modules("schemas"), **PRODUCER, **_modules("metatrail")}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in ALL:  # `from package import submodule`
                    out.append((sub, None, node.lineno))
                else:
                    out.append((source, alias.name, node.lineno))
    return out


def module_aliases(module: str, path: Path) -> dict[str, str]:
    """Local names bound to one of our modules (``from metatrail.producer import emitter``)."""
    tree = ast.parse(path.read_text(), str(path))
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in ALL:
                    names[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in ALL:
                    names[alias.asname] = alias.name
    return names


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in PRODUCER}
    for module, path in PRODUCER.items():
        for target, _, _ in imports(module, path):
            if target in PRODUCER and target != module:
                edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str, path: Path) -> list[str]:
    """Private names of another of our modules that ``module`` imports or touches."""
    found = []
    for target, name, line in imports(module, path):
        if target in ALL and target != module and name is not None and _private(name):
            found.append(f"{_where(path)}:{line}: from {target} import {name}")
    aliases = module_aliases(module, path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module
            and _private(node.attr)
        ):
            found.append(
                f"{_where(path)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}"
            )
    return found


def test_the_producer_modules_import_in_one_direction() -> None:
    assert len(PRODUCER) > 20  # the walk found the package
    assert cycles(graph()) == []


def test_no_module_takes_a_private_name_of_another() -> None:
    found = [use for module, path in {**PRODUCER, **_modules("metatrail")}.items() for use in private_uses(module, path)]
    assert found == []


def test_the_checker_sees_a_cycle_hidden_in_a_lazy_or_type_only_import(tmp_path: Path) -> None:
    """The checks above could pass by looking at nothing: feed them a known bad pair."""
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from metatrail.producer.b import B\n")
    b.write_text("def f():\n    from metatrail.producer import a\n    return a._hidden\n")
    saved = dict(PRODUCER), dict(ALL)
    try:
        for name, path in (("metatrail.producer.a", a), ("metatrail.producer.b", b)):
            PRODUCER[name] = ALL[name] = path
        assert ["metatrail.producer.a", "metatrail.producer.b"] in cycles(graph())
        uses = private_uses("metatrail.producer.b", b)
    finally:
        PRODUCER.clear(), PRODUCER.update(saved[0])
        ALL.clear(), ALL.update(saved[1])
    assert len(uses) == 1 and uses[0].endswith("metatrail.producer.a._hidden")


@pytest.mark.parametrize("module", ["context", "wire", "recorder", "track", "track_gen", "steps"])
def test_the_layers_of_the_core(module: str) -> None:
    """What each core module may reach: state never imports the recorder, the wire format
    never imports the recorder or the decorators, the recorder never the decorators."""
    above = {
        "context": {"wire", "recorder", "emitter", "track", "track_gen", "steps", "runs", "log"},
        "wire": {"recorder", "emitter", "track", "track_gen", "steps", "runs", "log"},
        "recorder": {"track", "track_gen", "steps", "runs", "log"},
        "track": {"steps"},
        "track_gen": {"track", "steps"},
        "steps": set(),
    }[module]
    name = f"metatrail.producer.{module}"
    reached = {t.rpartition(".")[2] for t in graph()[name]}
    assert reached & above == set()
