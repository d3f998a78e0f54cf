"""Layering: every fxpq_keras module imports only modules below it (no import cycles, lazy imports
included), so the folders read as the pipeline (issue 9 item 7)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fxpq_keras"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """fxpq_keras modules a file imports anywhere (top level or inside functions)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fxpq_keras"):
                out.add(target)
                for alias in node.names:  # "from . import packing" imports a module
                    out.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fxpq_keras")}
    return out


# Known and left to its owner: keras3 (Keras 3 -> tf_keras translation, below keras_model) takes
# UnsupportedLayerError from keras_model, which imports keras3 lazily to translate.
# Likewise kernels.engines imports kernels.tflm_engines at its end to register the TFLM engines,
# and tflm_engines takes the firmware helpers from engines.
KNOWN_CYCLES = {frozenset({"fxpq_keras.keras3", "fxpq_keras.keras_model"}),
                frozenset({"fxpq_keras.kernels.engines", "fxpq_keras.kernels.tflm_engines"})}


def test_no_import_cycles_between_modules():
    files = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {m: {t for t in _imports(p) if t in files and t != m and frozenset({m, t}) not in KNOWN_CYCLES}
             for m, p in files.items()}
    # a package's __init__ re-exporting its modules is not a dependency of those modules on it
    for m in graph:
        graph[m] = {t for t in graph[m] if not (files[t].name == "__init__.py" and m.startswith(t + "."))}
    for m, deps in graph.items():
        if files[m].name == "__init__.py":
            graph[m] = {t for t in deps if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_cycles_issue_9_named_are_gone():
    """flatbuffer/packing no longer imports kernels; calibration does not import policy; builtin and
    writer do not import each other (both build through flatbuffer/builder)."""
    pairs = {"fxpq_keras.flatbuffer.packing": "fxpq_keras.kernels", "fxpq_keras.calibration": "fxpq_keras.policy",
             "fxpq_keras.flatbuffer.builtin": "fxpq_keras.flatbuffer.writer"}
    for module, forbidden in pairs.items():
        path = PKG.parent / (module.replace(".", "/") + ".py")
        assert not any(t == forbidden or t.startswith(forbidden + ".") for t in _imports(path)), module
