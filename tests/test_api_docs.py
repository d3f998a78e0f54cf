"""The API reference (issue 20 item 6): it builds from the docstrings, and every public name has a
docstring, every public function and class (exceptions aside) an example in it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import fxpq_keras

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "api_docs.py"


def _script():
    spec = importlib.util.spec_from_file_location("api_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring_with_an_example():
    api = _script()
    assert not api.problems(), api.problems()
    assert len(api.public_names()) >= 30  # the check ran over the whole public API


def test_the_checker_notices_a_missing_docstring_or_example(monkeypatch):
    api = _script()

    def undocumented(x):
        return x

    def no_example(x):
        """Says what, not how."""
        return x

    monkeypatch.setitem(fxpq_keras.__dict__, "undocumented", undocumented)
    monkeypatch.setitem(fxpq_keras.__dict__, "no_example", no_example)
    monkeypatch.setattr(fxpq_keras, "__all__", [*fxpq_keras.__all__, "undocumented", "no_example"])
    assert {"undocumented: no docstring", "no_example: no example in its docstring"} <= set(api.problems())


def test_the_reference_builds_and_covers_the_public_api(tmp_path):
    api = _script()
    index = api.build(tmp_path / "api")
    assert index.exists()
    page = (tmp_path / "api" / "fxpq_keras.html").read_text()
    missing = [name for name in api.public_names() if f'id="{name}"' not in page]
    assert not missing, f"not in the reference: {missing}"
    assert "FxPQNet(max_accuracy_drop=0.01).quantize(model, x_calib)" in page  # examples render as code
    assert (tmp_path / "api" / "fxpq_keras" / "search.html").exists()
