"""The examples run, on reduced settings: the fit-callbacks tutorial and the QEMU firmware example.

(examples/end_to_end.py, the main job, is tests/test_main_job.py.) Both run in-process through
their `main(argv)` so TensorFlow is imported once.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import fxpq_keras
from fxpq_keras._tf import keras

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(relative: str) -> ModuleType:
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_callbacks_example(tmp_path, capsys) -> None:
    example = load_example("fit_callbacks.py")
    rc = example.main(["--epochs", "6", "--samples", "300", "--max-bits", "8", "--max-drop", "0.03",
                       "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "epoch   1:" in out and "search done after" in out
    assert out.count("compression vs float32") == 1  # the policy summary, printed once at the end
    policy = fxpq_keras.Policy.from_json(str(tmp_path / "policy.json"))
    assert policy.memory().compression_total > 4  # below 8 bits somewhere: the callback did lower precision
    assert (tmp_path / "my_digits_cnn.keras").exists()


MISSING = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(tool) is None]


@pytest.mark.qemu
@pytest.mark.skipif(bool(MISSING), reason=f"firmware example needs {', '.join(MISSING)} (not installed)")
def test_firmware_example_runs_on_qemu(tmp_path, capsys) -> None:
    """A user's model (own .h5, policy, inputs) through every step; QEMU output == reference."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:800], d.target[:800], epochs=4, batch_size=64, verbose=0)
    model.save(tmp_path / "user.h5")
    fxpq_keras.Policy.uniform(model, 6, x[:200]).to_json(str(tmp_path / "policy.json"))
    np.save(tmp_path / "x.npy", x[1500:])
    np.save(tmp_path / "y.npy", d.target[1500:])

    example = load_example("firmware/run_on_qemu.py")
    rc = example.main(["--model", str(tmp_path / "user.h5"), "--policy", str(tmp_path / "policy.json"),
                       "--inputs", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                       "--samples", "12", "--build", str(tmp_path / "fw")])
    out = capsys.readouterr().out
    assert rc == 0, out
    for step in ("$ fxpq export", "$ make -C", "$ qemu-system-arm -M mps2-an386", "12 inferences"):
        assert step in out
    assert "identical to the reference interpreter: True" in out
    assert (tmp_path / "fw" / "fxpq_model.elf").exists() and (tmp_path / "fw" / "fxpq_model_array.h").exists()
