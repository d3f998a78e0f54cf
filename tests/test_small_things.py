"""Issue 20 item 5, the small things: no TF noise in a search, usual file modes, engines and input
dtypes named, the trajectory plot marks the result, the firmware example takes the main job's policy."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras
from fxpq_keras.cli import main
from fxpq_keras.report import plot, trajectory_points
from fxpq_keras.search.adaptation import Step

ROOT = Path(__file__).resolve().parents[1]


def _digits_model(seed: int = 0) -> tuple[keras.Model, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                              keras.layers.MaxPooling2D(2, name="pool"), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:1000], d.target[:1000], epochs=6, batch_size=64, verbose=0)
    return model, x


@pytest.fixture(scope="module")
def digits():
    return _digits_model()


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory):
    model, x = digits
    root = tmp_path_factory.mktemp("files")
    qmodel = fx.quantize_model(model, fx.Policy.uniform(model, 8, x[:200]))
    paths = {"fxp": root / "fxp.tflite", "builtin": root / "b8.tflite", "x": root / "x.npy", "x_u8": root / "xu8.npy"}
    fx.export_tflite(qmodel, paths["fxp"])
    fx.export_tflite(qmodel, paths["builtin"], target="int8-builtin")
    np.save(paths["x"], x[:16])
    np.save(paths["x_u8"], (x[:16] * 255).astype(np.uint8))
    return paths


def test_a_search_prints_no_tensorflow_noise(tmp_path):
    """Before: two ~600-character 'triggered tf.function retracing' warnings (one closure traced once in
    each of many stages reads to TF as one function retraced) and a 'failed call to cuInit' line."""
    script = tmp_path / "search.py"
    script.write_text(
        "import numpy as np, fxpq_keras as fx\n"
        "from fxpq_keras._tf import keras\n"
        "from sklearn.datasets import load_digits\n"
        "keras.utils.set_random_seed(0)\n"
        "L = keras.layers\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation='relu'), L.Conv2D(8, 3, "
        "activation='relu'), L.MaxPooling2D(2), L.Flatten(), L.Dense(16, activation='relu'), L.Dense(10), "
        "L.Activation('softmax')])\n"
        "d = load_digits()\n"
        "x = (d.images / 16.0).astype(np.float32)[..., None]\n"
        "m.compile(keras.optimizers.Adam(1e-2), 'sparse_categorical_crossentropy')\n"
        "m.fit(x[:1000], d.target[:1000], epochs=10, batch_size=64, verbose=0)\n"
        "r = fx.FxPQNet(0.05, samples=200, max_bits=8, verbose=0).quantize(m, x[1000:1200])\n"
        "print('evaluations', r.evaluations)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 10  # a real search: many evaluations, every stage run
    for noise in ("retracing", "cuInit", "WARNING:tensorflow"):
        assert noise not in proc.stderr, proc.stderr


def test_output_files_and_folders_get_the_usual_modes(digits, tmp_path, capsys):
    """Before: 0600 files and a 0700 folder (mkstemp/mkdtemp). Under umask 022: 0644 and 0755."""
    model, x = digits
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "calib.npz", x=x[:200])
    old = os.umask(0o022)
    try:
        rc = main(["--quiet", "quantize", str(tmp_path / "m.keras"), "-d", str(tmp_path / "calib.npz"),
                   "-o", str(tmp_path / "out"), "--samples", "200", "--max-bits", "6", "--max-drop", "0.2"])
        assert rc == 0, capsys.readouterr().err
        fx.Policy.from_json(str(tmp_path / "out" / "policy.json")).to_json(str(tmp_path / "again.json"))
        rc = main(["--quiet", "export", str(tmp_path / "m.keras"), str(tmp_path / "out" / "policy.json"),
                   "-o", str(tmp_path / "exported.tflite")])
        assert rc == 0, capsys.readouterr().err
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    written = [*(tmp_path / "out").iterdir(), tmp_path / "exported.tflite"]
    assert len(written) >= 4
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}


def test_runner_engines_name_the_engines_of_a_builtin_file(files, capsys):
    """Before: 'unsupported builtin op 114' from the C runner."""
    rc = main(["run", str(files["builtin"]), "-i", str(files["x"]), "-o", str(files["x"].parent / "y.npy"),
               "--engine", "host"])
    err = capsys.readouterr().err
    assert rc == 2 and "int8-builtin" in err and "--engine tflm" in err and "tflm-m4" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_integer_input_to_a_float_input_file_is_refused(files, capsys):
    """Before: uint8 pixels were cast to float silently (accuracy 90 % -> 31 %)."""
    with pytest.raises(ValueError, match="float32 input.*got uint8"):
        fx.Interpreter(files["fxp"]).predict(np.load(files["x_u8"]))
    rc = main(["run", str(files["fxp"]), "-i", str(files["x_u8"]), "-o", str(files["x"].parent / "y.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "float32" in err and "uint8" in err
    assert fx.Interpreter(files["fxp"]).predict(np.load(files["x"])).shape == (16, 10)


class _Result:
    """What plot() reads of a QuantizationResult, with a trajectory holding a walk-back."""

    def __init__(self, policy: fx.Policy, trajectory: list[Step]) -> None:
        self.policy, self.trajectory, self.evaluations = policy, trajectory, 9
        self.options = fx.SearchOptions(0.01)
        self.check_metrics = type("M", (), {"agreement": 0.99})()


def _step(action: str, key: str, ratio: float, agreement: float) -> Step:
    return Step(action, key, 0, 0, 0, ratio, agreement, agreement, 0.0, 0.0)


def test_the_trajectory_plot_marks_the_result_and_the_walked_back_steps(digits, tmp_path):
    """Before: steps a walk-back undid were drawn as part of the path, and nothing marked the result."""
    model, x = digits
    policy = fx.Policy.uniform(model, 6, x[:100])
    ratio = policy.memory().compression_total
    trajectory = [_step("start", "", 2.0, 1.0), _step("lower", "a", 3.0, 0.995), _step("lower", "b", ratio, 0.992),
                  _step("lower", "c", 6.5, 0.985), _step("lower", "d", 7.0, 0.98), _step("back", "2 step(s)", 0, 0),
                  _step("done", "", ratio, 0.992)]
    result = _Result(policy, trajectory)
    points = trajectory_points(result)
    assert points["kept"] == [(2.0, 1.0), (3.0, 0.995), (ratio, 0.992)]
    assert points["walked_back"] == [(6.5, 0.985), (7.0, 0.98)]
    assert points["result"] == (ratio, 0.992)
    labels = plot(result, str(tmp_path / "r.png"))
    assert any(label.startswith("walked back") for label in labels)
    assert f"result: {ratio:.2f}x, 99.20%" in labels
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_the_trajectory_plot_shows_the_budget_metric_of_an_snr_search(digits, tmp_path):
    """Before: an snr (or anomaly, or user metric) search plotted top-1 agreement, which is nan there."""
    model, x = digits
    policy = fx.Policy.uniform(model, 6, x[:100])
    ratio = policy.memory().compression_total

    def step(action: str, key: str, r: float, loss: float) -> Step:
        return Step(action, key, 0, 0, 0, r, float("nan"), float("nan"), 0.0, 0.0, loss, loss)

    result = _Result(policy, [step("start", "", 2.0, 0.0), step("lower", "a", ratio, 0.004),
                              step("lower", "b", 7.0, 0.02), step("back", "1 step(s)", 0, 0)])
    result.metric = "snr"
    points = trajectory_points(result)
    assert points["kept"] == [(2.0, 0.0), (ratio, 0.004)] and points["walked_back"] == [(7.0, 0.02)]
    assert points["result"] == (ratio, 0.004)
    labels = plot(result, str(tmp_path / "r.png"))
    assert f"result: {ratio:.2f}x, 0.40%" in labels


def test_firmware_example_takes_the_policy_the_main_job_wrote(digits, tmp_path, capsys):
    """Before: it looked for a cache file bench/mcu.py never writes and always fell back to uniform 8-bit."""
    spec = importlib.util.spec_from_file_location("run_on_qemu", ROOT / "examples" / "firmware" / "run_on_qemu.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, x = digits
    main_out = tmp_path / "main"
    main_out.mkdir()
    searched = fx.Policy.uniform(model, 5, x[:100])
    searched.to_json(str(main_out / "policy.json"))
    chosen = example.default_policy(model, main_out, tmp_path / "build", x[:100])
    assert chosen == str(main_out / "policy.json") and "the main job wrote" in capsys.readouterr().out
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, name="head")])
    chosen = example.default_policy(other, main_out, tmp_path / "build", x[:100])
    assert "does not fit this model" in capsys.readouterr().out
    assert fx.Policy.from_json(chosen).get("head", "weights").bits == 8


def test_readme_main_job_figures_say_how_to_rerun_them_and_the_range_seen():
    """Before: figures that did not reproduce elsewhere (float 96.90 % vs 96.60 %, file 36,560 vs
    35,568 B) under 'fixed seeds'. Now the command, the commit they were rerun at, and the range."""
    import re

    readme = (ROOT / "README.md").read_text()
    head, _, rest = readme.partition("**The main job**")
    intro, block, after = rest.split("```", 2)
    assert "bash scripts/main.sh" in intro and "examples/end_to_end.py" in intro
    assert re.search(r"at [0-9a-f]{7}", intro)  # the commit the figures were rerun at
    seen = after.split("\n\n")[1]
    assert seen.startswith("Range seen across machines")
    accuracy = float(re.search(r"float32 test accuracy +([\d.]+)%", block).group(1))
    low, high = map(float, re.search(r"accuracy ([\d.]+)-([\d.]+) %", seen).groups())
    assert low <= accuracy <= high
    size = int(re.search(r"model file bytes +([\d,]+)", block).group(1).replace(",", ""))
    low, high = (int(v.replace(",", "")) for v in re.search(r"model file ([\d,]+)-([\d,]+) bytes", seen).groups())
    assert low <= size <= high
