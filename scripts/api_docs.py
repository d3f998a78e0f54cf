"""Build the API reference (HTML, pdoc) from the docstrings of fxpq_keras's public names.

    .venv/bin/python scripts/api_docs.py                 # -> build/api/index.html (build/ is not committed)
    .venv/bin/python scripts/api_docs.py --out DIR       # elsewhere
    .venv/bin/python scripts/api_docs.py --check         # only list public names without a docstring or example

The reference covers the package `fxpq_keras` (its `__all__`: what `import fxpq_keras as fx` gives)
and the pipeline's modules a user reaches into (search, fake-quant, integer graph, flatbuffer,
policy, calibration, formats, callbacks, report). Exit status 1 when a public name has no
docstring, or a public function or class (exceptions and warnings aside) has no example
(tests/test_api_docs.py runs this in CI).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULES = ["fxpq_keras", "fxpq_keras.search", "fxpq_keras.fakequant", "fxpq_keras.integer_graph",
           "fxpq_keras.flatbuffer", "fxpq_keras.policy", "fxpq_keras.calibration", "fxpq_keras.formats",
           "fxpq_keras.callbacks", "fxpq_keras.report"]


def public_names() -> dict[str, object]:
    """Every name of fxpq_keras.__all__, resolved (the package imports them lazily: pdoc sees them
    only once they are attributes)."""
    import fxpq_keras

    return {name: getattr(fxpq_keras, name) for name in fxpq_keras.__all__ if not name.startswith("__")}


def has_example(doc: str) -> bool:
    return "Example" in doc and ("::" in doc or ">>>" in doc)


def problems() -> list[str]:
    """Public names without a docstring, or callables without an example in it."""
    import fxpq_keras

    out = []
    package_doc = inspect.getdoc(fxpq_keras) or ""
    for name, obj in public_names().items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):  # a constant: described by the package
            if f"`{name}`" not in package_doc:
                out.append(f"{name}: a constant the package docstring does not describe")
            continue
        doc = inspect.getdoc(obj) or ""
        if obj.__doc__ is None or not doc.strip():
            out.append(f"{name}: no docstring")
        elif not (inspect.isclass(obj) and issubclass(obj, BaseException)) and not has_example(doc):
            out.append(f"{name}: no example in its docstring")
    return out


def build(out: Path) -> Path:
    """Write the HTML reference into `out`; returns its index page."""
    import pdoc
    import pdoc.render

    public_names()  # resolve the lazy exports before pdoc reads the package
    pdoc.render.configure(docformat="restructuredtext", show_source=False,
                          footer_text="fxpq API reference, built by scripts/api_docs.py")
    pdoc.pdoc(*MODULES, output_directory=out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "api"), help="output folder (created)")
    ap.add_argument("--check", action="store_true", help="only check docstrings and examples")
    args = ap.parse_args(argv)
    missing = problems()
    for line in missing:
        print(f"api_docs: {line}", file=sys.stderr)
    if not args.check:
        index = build(Path(args.out))
        print(f"wrote {index} ({sum(1 for _ in Path(args.out).rglob('*.html'))} pages)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
