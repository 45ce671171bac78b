"""The dependency rules docs/architecture.md draws are import-linter contracts, and they
cover every module: one added outside all of them fails here."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp

ROOT = Path(__file__).parent.parent


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "precip_repro", "replay", include_external_packages=False,
        exclude_type_checking_imports=False,
    )  # fmt: skip


def named_by_rules() -> set[str]:
    """The modules the rule contracts (layers, forbidden) name as their subjects."""
    named: set[str] = set()
    for contract in contracts():
        if contract["type"] == "layers":
            for layer in contract["layers"]:
                named.update(part.strip() for part in layer.replace(":", "|").split("|"))
        elif contract["type"] == "forbidden":
            named.update(contract["source_modules"])
    return named


def test_every_module_is_the_subject_of_some_rule_contract():
    named = named_by_rules()
    roots = {"precip_repro", "replay"}

    def covered(module: str) -> bool:
        # A rule about a whole root package ("precip_repro never imports replay") says
        # nothing of where its modules stand: it covers the package's own __init__ only.
        return any(
            module == name or (name not in roots and module.startswith(name + "."))
            for name in named
        )

    uncovered = sorted(module for module in graph().modules if not covered(module))
    assert uncovered == [], f"no contract in pyproject.toml names {uncovered}"


def test_no_module_imports_another_that_imports_it_back():
    # Tarjan's strongly connected components over the whole module graph: a cycle through
    # modules of different packages is one acyclic_siblings cannot see.
    g = graph()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in g.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(g.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_architecture_page_names_each_rule_contract():
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert "import-linter" in page
    for contract in contracts():
        if contract["type"] == "forbidden":
            for module in contract["source_modules"]:
                assert module.removeprefix("precip_repro.") in page, module
