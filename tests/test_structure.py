"""The shape of the library: data flows one way between modules (no import cycle, imports inside functions
included), and no module uses another module's private names."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sparse_circuits"
MODULES = sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_"))


def _imports(mod: str):
    "(imported module, imported name or None, line) for every import of a sparse_circuits module, anywhere in `mod`."
    tree = ast.parse((PKG / f"{mod}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1: base = f"sparse_circuits.{base}" if base else "sparse_circuits"
            if base == "sparse_circuits":   # `from sparse_circuits import tasks as T`
                for a in node.names: yield a.name, None, node.lineno
            elif base.startswith("sparse_circuits."):
                for a in node.names: yield base.split(".")[1], a.name, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sparse_circuits."): yield a.name.split(".")[1], None, node.lineno


def _aliases(mod: str) -> dict:
    "Local names bound to other sparse_circuits modules (import ... as T)."
    tree = ast.parse((PKG / f"{mod}.py").read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module == "sparse_circuits" or (node.level == 1 and not node.module)):
            for a in node.names: out[a.asname or a.name] = a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sparse_circuits.") and a.asname: out[a.asname] = a.name.split(".")[1]
    return out


def import_graph() -> dict:
    return {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}


def find_cycle(graph: dict):
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1: return stack[stack.index(t):] + [t]
            if state.get(t) is None and (c := visit(t)): return c
        state[n] = 2; stack.pop()
    for n in sorted(graph):
        if state.get(n) is None and (c := visit(n)): return c


def private_uses(mod: str) -> list:
    "Another module's private names that `mod` imports or reaches through an alias (`T._fill`)."
    bad = [f"{mod}:{line}: from {t} import {name}" for t, name, line in _imports(mod)
           if name and name.startswith("_") and t != mod]
    aliases = _aliases(mod)
    for node in ast.walk(ast.parse((PKG / f"{mod}.py").read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{mod}:{node.lineno}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    return bad


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_names_of_other_modules():
    bad = [b for m in MODULES for b in private_uses(m)]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_checks_can_fail(tmp_path, monkeypatch):
    "The cycle and private-name checks find what they look for."
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    (tmp_path / "x.py").write_text("from sparse_circuits.y import _hidden\nfrom sparse_circuits import tasks as T\nT._fill\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    assert len(private_uses("x")) == 2


def test_core_is_the_bottom_layer():
    "core imports no other module of the library; every other module may import it."
    assert import_graph()["core"] == set()
