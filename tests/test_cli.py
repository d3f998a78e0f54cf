"""The `fxpq` CLI: help, --version, --quiet, every subcommand's work and its bad-input errors.

Errors must be one line on stderr, no traceback, with a non-zero exit. Most cases run
`fxpq_keras.cli.main([...])` in-process (fast); two run the real `fxpq` script in a subprocess,
where TensorFlow's native log lines would show if they leaked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fxpq_keras
from fxpq_keras._tf import keras
from fxpq_keras.cli import COMMANDS, build_parser, main

FXPQ = Path(sys.executable).with_name("fxpq")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A user's small digits classifier, a uniform 8-bit policy, its .tflite and some bad files."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(24, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:1000], d.target[:1000], epochs=8, batch_size=64, verbose=0)
    root = tmp_path_factory.mktemp("cli")
    p = {k: str(root / v) for k, v in {
        "model": "mlp.h5", "policy": "policy.json", "tflite": "mlp.tflite", "x": "x.npy", "xz": "x.npz",
        "junk": "junk.bin", "trunc": "trunc.tflite", "pickled": "pickled.npy", "other_policy": "other.json",
        "text": "notes.txt"}.items()}
    p["root"] = str(root)
    model.save(p["model"])
    fxpq_keras.Policy.uniform(model, 8, x[:300]).to_json(p["policy"])
    other = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, name="elsewhere")])
    fxpq_keras.Policy.uniform(other, 8, x[:50]).to_json(p["other_policy"])
    assert main(["--quiet", "export", p["model"], p["policy"], "-o", p["tflite"]]) == 0
    np.save(p["x"], x[1000:1040])
    np.savez(p["xz"], x=x[1000:1040])
    Path(p["junk"]).write_bytes(b"this is not a model file at all\n" * 4)
    Path(p["trunc"]).write_bytes(Path(p["tflite"]).read_bytes()[:700])
    np.save(p["pickled"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    Path(p["text"]).write_text("{ not json")
    return p


def fmt(args: list[str], files: dict) -> list[str]:
    return [a.format(**files) for a in args]


def one_line_error(capsys, rc: int, want_rc: int, fragment: str) -> str:
    err = capsys.readouterr().err
    assert rc == want_rc, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    return lines[0]


# -- the real script, in a subprocess ------------------------------------------------------------
def _script(*args: str) -> subprocess.CompletedProcess:
    if not FXPQ.exists():
        pytest.skip(f"the fxpq script is not installed next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "FXPQ_DEBUG")}
    return subprocess.run([str(FXPQ), *args], capture_output=True, text=True, timeout=120, env=env)


def test_script_help_and_version() -> None:
    proc = _script("--help")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for text in (*COMMANDS, "examples:", "exit status", "--quiet", "--version"):
        assert text in proc.stdout


def test_help_and_argument_errors_import_no_tensorflow() -> None:
    """`fxpq --help`, every `COMMAND --help` and an argument error answer without importing
    TensorFlow (which takes seconds): checked in a fresh interpreter through sys.modules."""
    code = ("import sys\nfrom fxpq_keras.cli import main\nrcs = [main(a) for a in "
            "(['--help'], *[[c, '--help'] for c in sys.argv[1:]], ['run', 'x.tflite'], ['quantize', '--max-bits'], "
            "['quantize', 'm.keras', '-d', 'd.npz', '-o', 'o', '--max-drop', '1.5'], "
            "['quantize', 'm.keras', '-d', 'd.npz', '-o', 'o', '--min-bits', '1'])]\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', "
            "'tensorflow_model_optimization'))\nprint('RESULT', rcs, heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, timeout=120)
    result = proc.stdout.strip().splitlines()[-1]
    assert result == f"RESULT {[0] * (1 + len(COMMANDS)) + [2] * 4} []", (result, proc.stderr[-2000:])
    assert "max_accuracy_drop must be in (0, 1)" in proc.stderr and "min_bits must be in 2..16" in proc.stderr
    from fxpq_keras.commands.run import ENGINE_NAMES
    from fxpq_keras.flatbuffer.interpreter import ENGINES
    from fxpq_keras.kernels import engines as _  # noqa: F401  (registers the C engines)

    assert sorted(ENGINE_NAMES) == sorted(ENGINES)  # the static list behind --engine is complete


def test_script_bad_model_file_is_one_line(files: dict) -> None:
    """A Keras load error (junk .h5) through the real script: one line, no TF log lines either."""
    proc = _script("export", files["junk"], files["policy"], "-o", f"{files['root']}/never.tflite")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("fxpq export: error: cannot load") and files["junk"] in proc.stderr
    assert not os.path.exists(f"{files['root']}/never.tflite")


# -- help, version, quiet -----------------------------------------------------------------------
def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fxpq {fxpq_keras.__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_is_complete(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"fxpq {command} " in out.split("examples:")[1]
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in out
        if action.help and action.option_strings and action.default not in (None, False, "==SUPPRESS==") \
                and not action.required:
            assert "default" in action.help or f"(default: {action.default})" in " ".join(out.split()), action.dest


def test_no_command_and_unknown_option(capsys) -> None:
    one_line_error(capsys, main([]), 2, "a COMMAND is required")
    one_line_error(capsys, main(["inspect"]), 2, "the following arguments are required: model")
    one_line_error(capsys, main(["frobnicate"]), 2, "invalid choice")


@pytest.mark.parametrize("where", ["before", "after", "none"])
def test_quiet_before_or_after_the_command(files: dict, tmp_path, capsys, where: str) -> None:
    out = str(tmp_path / "m.tflite")
    args = ["export", files["model"], files["policy"], "-o", out]
    args = {"before": ["--quiet", *args], "after": [*args, "--quiet"], "none": args}[where]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (printed == "") == (where != "none"), printed
    assert Path(out).read_bytes() == Path(files["tflite"]).read_bytes()  # same policy, same file


# -- export --------------------------------------------------------------------------------------
def test_export_c_array(files: dict, tmp_path, capsys) -> None:
    header = tmp_path / "model_data.h"
    assert main(["export", files["model"], files["policy"], "-o", str(tmp_path / "a.tflite"),
                 "--c-array", str(header)]) == 0
    assert "alignas(16)" in header.read_text() or "aligned(16)" in header.read_text()
    capsys.readouterr()


@pytest.mark.parametrize("args, fragment", [
    (["{root}/missing.h5", "{policy}", "-o", "{root}/o.tflite"], "model file not found"),
    (["{model}", "{root}/missing.json", "-o", "{root}/o.tflite"], "policy file not found"),
    (["{model}", "{text}", "-o", "{root}/o.tflite"], "not valid JSON"),
    (["{model}", "{other_policy}", "-o", "{root}/o.tflite"], "elsewhere"),
    (["{junk}", "{policy}", "-o", "{root}/o.tflite"], "cannot load"),
    (["{model}", "{policy}", "-o", "{root}/no/such/dir/o.tflite"], "does not exist"),
    (["{model}", "{policy}", "-o", "{root}/o.tflite", "--target", "int4"], "invalid choice"),
    (["{model}", "{policy}"], "required: -o/--output"),
])
def test_export_bad_input(files: dict, capsys, args: list, fragment: str) -> None:
    one_line_error(capsys, main(["export", *fmt(args, files)]), 2, fragment)
    assert not os.path.exists(f"{files['root']}/o.tflite")


# -- run -----------------------------------------------------------------------------------------
def test_run_reference_and_host(files: dict, tmp_path, capsys) -> None:
    ref, host, probs = (str(tmp_path / n) for n in ("ref.npy", "host.npy", "probs.npy"))
    assert main(["run", files["tflite"], "-i", files["x"], "-o", ref, "--raw"]) == 0
    assert main(["-q", "run", files["tflite"], "-i", files["xz"], "-o", host, "--raw", "--engine", "host"]) == 0
    assert main(["run", files["tflite"], "-i", files["x"], "-o", probs, "-q"]) == 0
    out = capsys.readouterr().out
    assert out.count("wrote") == 1 and "[40, 10]" in out
    assert np.array_equal(np.load(ref), np.load(host)) and np.load(ref).dtype.kind == "i"
    assert np.allclose(np.load(probs).sum(-1), 1, atol=1e-3)


@pytest.mark.parametrize("args, fragment", [
    (["{root}/missing.tflite", "-i", "{x}"], "model file not found"),
    (["{tflite}", "-i", "{root}/missing.npy"], "input batch not found"),
    (["{junk}", "-i", "{x}"], "not a TFLite flatbuffer"),
    (["{trunc}", "-i", "{x}"], "malformed or truncated"),
    (["{tflite}", "-i", "{junk}"], "cannot read"),
    (["{tflite}", "-i", "{pickled}"], "cannot read"),
    (["{tflite}", "-i", "{policy}"], "cannot read"),
    (["{tflite}", "-i", "{tflite}"], "cannot read"),
    (["{tflite}", "-i", "{x}", "--engine", "gpu"], "invalid choice: 'gpu'"),
    (["{tflite}", "-i", "{model}"], "cannot read"),
])
def test_run_bad_input(files: dict, capsys, args: list, fragment: str) -> None:
    out = f"{files['root']}/y.npy"
    line = one_line_error(capsys, main(["run", *fmt(args, files), "-o", out]), 2, fragment)
    assert line.startswith("fxpq run: error:")
    assert not os.path.exists(out)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make")),
                    reason="needs qemu-system-arm, arm-none-eabi-gcc and make")
@pytest.mark.parametrize("engine, cpu", [("qemu-m4", "Cortex-M4"), ("qemu-m7", "Cortex-M7")])
def test_run_on_qemu_prints_instructions_and_arena(files: dict, tmp_path, capsys, engine: str, cpu: str) -> None:
    """The emulated Cortex-M engines print instructions per inference (mean/min/max) and the arena
    bytes, the same figures the Python API gives for the same batch."""
    x = np.load(files["x"])[:6]
    np.save(tmp_path / "x6.npy", x)
    assert main(["--quiet", "run", files["tflite"], "-i", str(tmp_path / "x6.npy"), "-o", str(tmp_path / "y.npy"),
                 "--engine", engine]) == 0
    lines = capsys.readouterr().out.splitlines()
    interp = fxpq_keras.Interpreter(files["tflite"], engine=engine)
    interp.predict(x)
    m = interp.engine.measurements()
    assert m["inferences"] == 6 and m["instructions_min"] <= m["instructions_mean"] <= m["instructions_max"]
    assert m["instructions_min"] > 1000 and m["runner_arena_bytes"] == interp.engine.arena_bytes > 0
    assert 0 < m["runner_planned_bytes"] < m["runner_arena_bytes"]
    from fxpq_keras.flatbuffer.inspect import inspect_tflite  # the same plan as `fxpq inspect` models

    assert m["runner_planned_bytes"] == inspect_tflite(files["tflite"])["totals"]["runner_planned_bytes"]
    assert lines[0] == (f"instructions per inference ({cpu}, 6 inferences): mean {m['instructions_mean']:,.0f}, "
                        f"min {m['instructions_min']:,}, max {m['instructions_max']:,}")
    # one name per figure (docs/format.md section 10): the runner's arena is not TFLM's (ram_bytes)
    assert lines[1].startswith(f"runner_arena_bytes {m['runner_arena_bytes']:,} (the C runner's arena on the {cpu}: "
                               f"runner_planned_bytes {m['runner_planned_bytes']:,}") and len(lines) == 2


def test_run_wrong_shape_and_npz_without_x(files: dict, tmp_path, capsys) -> None:
    np.save(tmp_path / "img.npy", np.zeros((3, 8, 8), np.float32))
    np.savez(tmp_path / "noxs.npz", images=np.zeros((3, 64), np.float32))
    one_line_error(capsys, main(["run", files["tflite"], "-i", str(tmp_path / "img.npy"), "-o",
                                 str(tmp_path / "y.npy")]), 2, "shape [N, 64]")
    one_line_error(capsys, main(["run", files["tflite"], "-i", str(tmp_path / "noxs.npz"), "-o",
                                 str(tmp_path / "y.npy")]), 2, "must hold the input batch as 'x'")


# -- inspect -------------------------------------------------------------------------------------
def test_inspect_table_and_json(files: dict, capsys) -> None:
    assert main(["inspect", files["tflite"]]) == 0
    table = capsys.readouterr().out
    assert "fully_connected" in table and "compression vs float32" in table
    assert main(["inspect", files["tflite"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"layers", "totals"} <= set(report)


@pytest.mark.parametrize("path, fragment", [
    ("{root}/missing.tflite", "model file not found"),
    ("{root}", "not a file"),
    ("{junk}", "not a TFLite flatbuffer"),
    ("{trunc}", "malformed or truncated"),
    ("{x}", "not a TFLite flatbuffer"),
])
def test_inspect_bad_input(files: dict, capsys, path: str, fragment: str) -> None:
    one_line_error(capsys, main(["inspect", path.format(**files)]), 2, fragment)


# -- quantize (the search itself: tests/test_cli_quantize.py) ------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["{junk}", "-d", "{xz}"], "cannot load"),
    (["{model}", "-d", "{junk}"], "cannot read"),
    (["{model}", "-d", "{xz}", "--samples", "0"], "argument --samples: must be >= 1"),
    (["{model}", "-d", "{xz}", "--max-drop", "abc"], "argument --max-drop: invalid number: 'abc'"),
    (["{model}", "-d", "{xz}", "--max-bits", "20"], "max_bits"),
    (["{model}", "-d", "{xz}", "--memory-target", "-5"], "must be >= 1"),
])
def test_quantize_bad_input(files: dict, tmp_path, capsys, args: list, fragment: str) -> None:
    one_line_error(capsys, main(["quantize", *fmt(args, files), "-o", str(tmp_path / "o")]), 2, fragment)
    assert not (tmp_path / "o" / "policy.json").exists()
