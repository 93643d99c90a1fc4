"""Imports flow one way: the science never imports the service layers (STYLE.md, habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "papscreen"

# What each layer may import from papscreen (besides itself and the base modules).
BASE = {"papscreen", "papscreen.errors", "papscreen.bethesda", "papscreen.config"}
ALLOWED: dict[str, set[str]] = {
    "imaging": set(),
    "datasets": {"imaging"},
    "models": {"imaging", "datasets"},
    "pipeline": {"imaging", "datasets", "models"},
    "db": set(),
    "intake": {"imaging", "datasets"},
    "reports": {"imaging", "db"},
    "tasks": {"imaging", "datasets", "models", "pipeline", "db", "intake"},
    "flows": {"imaging", "datasets", "models", "pipeline", "db", "intake", "tasks"},
    "cli": {
        "imaging",
        "datasets",
        "models",
        "pipeline",
        "db",
        "intake",
        "reports",
        "tasks",
        "flows",
        "cli",
        "dashboard",
    },
    "dashboard": {"imaging", "datasets", "models", "pipeline", "db", "intake", "reports", "dashboard"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every papscreen import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("papscreen"):
                found.append((child.module, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("papscreen"))
            visit(child, nested)

    visit(tree, False)
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_respect_layers(path: Path) -> None:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    layer = _layer(module)
    if module in BASE or layer in {"errors", "bethesda", "config"}:
        allowed_layers: set[str] = set()
    else:
        allowed_layers = ALLOWED.get(layer, set()) | {layer}
    for imported, line, in_function in _imports(path):
        assert not in_function, f"{module}:{line} imports {imported} inside a function; import at the top"
        if imported in BASE:
            continue
        assert _layer(imported) in allowed_layers, f"{module}:{line} imports {imported}: not allowed for '{layer}'"
