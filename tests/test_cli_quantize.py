"""`fxpq quantize` on a model file made by a user: outputs, budget, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fxpq_keras
from fxpq_keras._tf import keras
from fxpq_keras.cli import main


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])  # logits, no softmax
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1200], y[:1200], epochs=20, batch_size=64, verbose=0)
    root = tmp_path_factory.mktemp("user")
    paths = {"h5": str(root / "mlp.h5"), "keras": str(root / "mlp.keras"), "data": str(root / "calib.npz"),
             "nolabels": str(root / "x_only.npz"), "bad": str(root / "bad.npz"), "root": root}
    model.save(paths["h5"])
    model.save(paths["keras"])
    np.savez(paths["data"], x=x[:900], y=y[:900])
    np.savez(paths["nolabels"], x=x[:900])
    np.savez(paths["bad"], inputs=x[:10])
    return paths


def test_quantize_writes_policy_report_png(user_files: dict, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["quantize", user_files["keras"], "-d", user_files["data"], "-o", str(out), "--max-drop", "0.02",
               "--samples", "600", "--max-bits", "10", "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    policy = fxpq_keras.Policy.from_json(str(out / "policy.json"))
    assert policy.memory().compression_total > 3
    assert "| layer | data structure |" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "labeled accuracy" in printed and "network evaluations" in printed
    # issue 21: the search's time and peak memory, then the whole command's (writing and checking included)
    assert re.search(r"in [0-9.]+ s, peak memory \(RSS\) [0-9.]+ [MG]B", printed), printed
    assert re.search(r"time: [0-9.]+ s for the whole command \(loading .*, search [0-9.]+ s, writing and "
                     r"checking the files [0-9.]+ s\); peak memory \(RSS\) [0-9.]+ [MG]B", printed), printed
    if (out / "model.tflite").exists():  # written once the exporter is importable
        assert (out / "model.tflite").stat().st_size > 0
    # issue 20 item 3: the summary, report.md and `fxpq inspect` give one flash_bytes and one ram_bytes
    # (the summary said flash 1,270 B, parameters only, next to report.md's 5,824 B, and "other_flash_bytes ?")
    from fxpq_keras.flatbuffer.inspect import inspect_tflite

    totals = inspect_tflite(out / "model.tflite")["totals"]
    report = (out / "report.md").read_text()
    for name in ("flash_bytes", "ram_bytes", "runner_planned_bytes"):
        assert f"{name} {totals[name]:,}" in printed and f"| {name} | {totals[name]:,} |" in report, name
    assert "?" not in printed.split("objective")[1].splitlines()[1]


def test_quantize_h5_without_labels_and_memory_target(user_files: dict, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["--quiet", "quantize", user_files["h5"], "-d", user_files["nolabels"], "-o", str(out),
               "--samples", "600", "--max-bits", "8", "--memory-target", "1", "--margin-sigma", "0.5"])
    assert rc == 3  # written, but the target cannot be met within the budget
    assert "cannot be met" in capsys.readouterr().err
    assert json.loads((out / "policy.json").read_text())["fxpq_policy"] == 1
    assert "with 0.5 standard error(s) of head-room" in (out / "report.md").read_text()  # --margin-sigma


@pytest.mark.parametrize("args, message", [
    (["-d", "{bad}"], "must hold the calibration inputs as 'x'"),
    (["-d", "{root}/missing.npz"], "not found"),
    (["-d", "{data}", "--max-drop", "1.5"], "max_accuracy_drop"),
    (["-d", "{data}", "--min-bits", "1"], "min_bits"),
    (["-d", "{data}", "--margin-sigma", "7"], "margin_sigma"),
])
def test_quantize_bad_input(user_files: dict, tmp_path, capsys, args: list, message: str) -> None:
    args = [a.format(**user_files) for a in args]
    rc = main(["quantize", user_files["keras"], *args, "-o", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_quantize_missing_model(user_files: dict, tmp_path, capsys) -> None:
    rc = main(["quantize", str(tmp_path / "nope.keras"), "-d", user_files["data"], "-o", str(tmp_path / "o")])
    assert rc == 2 and "model file not found" in capsys.readouterr().err


def test_int8_builtin_refusal_is_the_last_line_and_fails(user_files: dict, tmp_path) -> None:
    """A searched policy below/above 8 bits cannot be stock int8: the real script says so on its
    last line (stdout and stderr in one pipe, as a user's console shows them), names the CLI flag
    and exits non-zero; the policy and report are still written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    fxpq = Path(sys.executable).with_name("fxpq")
    if not fxpq.exists():
        pytest.skip("the fxpq script is not installed")
    out = tmp_path / "out"
    proc = subprocess.run([str(fxpq), "quantize", user_files["keras"], "-d", user_files["data"], "-o", str(out),
                           "--samples", "300", "--max-bits", "10", "--target", "int8-builtin",
                           "--max-slowdown", "none"],  # with the speed cap this MLP's policy is uniform 8-bit
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout
    assert "model.tflite not written" in last and "--target fxp" in last and "target='fxp'" not in last, last
    assert not (out / "model.tflite").exists() and (out / "policy.json").exists()


def test_progress_when_stdout_is_not_a_terminal(user_files: dict, tmp_path, capsys, monkeypatch) -> None:
    """Piped output (capsys is not a terminal): a line per phase, progress lines with elapsed time
    and an estimate (every 0 s here instead of 10 s), one final line per search, nothing drawn in place."""
    from fxpq_keras.progress import Progress

    monkeypatch.setattr(Progress, "INTERVAL", 0.0)
    rc = main(["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(tmp_path / "out"),
               "--samples", "300", "--max-bits", "10"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    order = ["] loading ", "] calibrating:", "] evaluating the 10-bit start policy", "] searching: at most",
             "] bisecting the lowest uniform width", "] done: ", "] writing the policy", "compression vs float32"]
    at = [next(i for i, line in enumerate(lines) if fragment in line) for fragment in order]
    assert at == sorted(at), out
    progress = [line for line in lines if " bit steps (" in line and "%)," in line]
    assert progress and all("elapsed" in line and "ETA" in line for line in progress), out
    # one final line per search: a result above the speed cap is searched again under it (and says so)
    again = sum("searching again under the cap" in line for line in lines)
    assert sum("] done: " in line for line in lines) == 1 + again and "\r" not in out


def test_uniform_policy_without_a_search(user_files: dict, tmp_path, capsys) -> None:
    """--min-bits 8 --max-bits 8: nothing to search; the 8-bit policy is written and exported."""
    out = tmp_path / "out"
    rc = main(["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(out),
               "--samples", "300", "--min-bits", "8", "--max-bits", "8", "--max-drop", "0.03"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "nothing to lower" in printed.out and (out / "model.tflite").stat().st_size > 0
    policy = fxpq_keras.Policy.from_json(str(out / "policy.json"))
    assert {d.bits for layer, ds, d in policy.data_structures() if ds != "bias"} == {8}


def test_budget_not_met_exits_3_and_says_so_once(user_files: dict, tmp_path, capsys) -> None:
    """A budget the start policy already breaks: files written, exit 3, and no line claims it is met."""
    out = tmp_path / "out"
    rc = main(["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(out),
               "--samples", "300", "--min-bits", "3", "--max-bits", "3", "--max-drop", "0.001", "--allow-unresolved"])
    printed = capsys.readouterr()
    assert rc == 3
    assert "budget NOT met" in printed.err and "top-1 drop against the float model <= 0.10%" in printed.out
    assert "NOT MET" in printed.out and "-> met" not in printed.out
    assert (out / "policy.json").exists() and (out / "model.tflite").exists()


def test_output_folder_is_replaced_whole_or_not_at_all(user_files: dict, tmp_path, capsys, monkeypatch) -> None:
    """Issue 12 item 2: an interrupt just after policy.json left the new policy.json and report.md
    beside the old model.tflite. Now OUTDIR is as it was, or holds one run's files only."""
    import fxpq_keras.report as report

    out = tmp_path / "out"
    args = ["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(out), "--samples", "200",
            "--max-drop", "0.05", "--min-bits", "8", "--max-bits", "8"]  # 8 bits inside the budget: exit 0
    assert main(args + ["--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"policy.json", "report.md", "report.png", "model.tflite"}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "markdown", interrupted)  # policy.json is written, then the interrupt
    capsys.readouterr()
    assert main(args[:-2] + ["--min-bits", "7", "--max-bits", "7", "--quiet"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
    assert capsys.readouterr().err.strip() == "fxpq quantize: interrupted"
    monkeypatch.undo()

    (out / "report.png").unlink()
    (out / "stale.txt").write_text("mine")  # a file quantize does not write: the folder is refused
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files (stale.txt)" in err[0], err
    (out / "stale.txt").unlink()

    assert main(args[:-2] + ["--min-bits", "7", "--max-bits", "7"]) in (0, 3)  # 3: 7 bits may break the budget
    printed = capsys.readouterr().out
    assert f"replaced the earlier results in {out}" in printed
    assert {p.name for p in out.iterdir()} == set(before)
    assert json.loads((out / "policy.json").read_text())["input"]["bits"] == 7
    assert fxpq_keras.Interpreter(out / "model.tflite").info.policy["input"]["bits"] == 7


@pytest.mark.parametrize("flag, value", [([], False), (["--per-channel"], True), (["--per-channel", "on"], True),
                                         (["--per-channel", "off"], False), (["--per-channel", "auto"], "auto")])
def test_per_channel_flag(flag: list, value) -> None:
    """off by default; a bare --per-channel keeps its old meaning (every layer); auto chooses per layer."""
    from fxpq_keras.cli import build_parser
    from fxpq_keras.commands.quantize import PER_CHANNEL

    args = build_parser().parse_args(["quantize", "m.keras", "-d", "x.npz", "-o", "out", *flag])
    assert PER_CHANNEL[args.per_channel] == value


def test_per_channel_flag_rejects_other_values(capsys) -> None:
    assert main(["quantize", "m.keras", "-d", "x.npz", "-o", "out", "--per-channel", "yes"]) == 2
    assert "--per-channel" in capsys.readouterr().err


def test_quantize_integer_input_writes_the_file_it_planned(user_files: dict, tmp_path, capsys) -> None:
    """--integer-input: model.tflite takes the input's format integers (no float32 input buffer), and
    the report's RAM is that file's arena, as the search planned it."""
    from fxpq_keras.flatbuffer.interpreter import Interpreter
    from fxpq_keras.flatbuffer.memory import file_memory
    from fxpq_keras.formats import quantize

    out = tmp_path / "out"
    rc = main(["--quiet", "quantize", user_files["keras"], "-d", user_files["data"], "-o", str(out),
               "--samples", "300", "--max-bits", "10", "--integer-input"])
    assert rc == 0, capsys.readouterr().err
    blob = (out / "model.tflite").read_bytes()
    interp = Interpreter(str(out / "model.tflite"))
    assert not interp.info.float_input
    x = np.load(user_files["data"])["x"][:50]
    q = interp.predict(quantize(x, interp.graph.tensors[interp.graph.input].fmt))
    assert q.shape == (50, 10)
    assert f"{file_memory(blob).ram_bytes:,}" in (out / "report.md").read_text()


def test_export_from_policy_json_rebuilds_the_searched_file(user_files: dict, tmp_path, capsys) -> None:
    """With range alignment the formats fit rescaled weights: policy.json carries the channel scales, so
    `fxpq export` of the user's own float model and that policy writes the very file quantize wrote."""
    out = tmp_path / "out"
    rc = main(["--quiet", "quantize", user_files["keras"], "-d", user_files["data"], "-o", str(out),
               "--samples", "300", "--max-bits", "10", "--align-ranges", "on"])
    assert rc == 0, capsys.readouterr().err
    policy = json.loads((out / "policy.json").read_text())
    assert policy["channel_scales"]  # the hidden Dense(relu) -> Dense pair is rescaled
    again = tmp_path / "again.tflite"
    assert main(["--quiet", "export", user_files["keras"], str(out / "policy.json"), "-o", str(again)]) == 0
    assert again.read_bytes() == (out / "model.tflite").read_bytes()


def test_failed_export_keeps_the_earlier_result(user_files: dict, tmp_path, capsys) -> None:
    """Issue 24 item 5: `--target int8-builtin` of a policy above 8 bits, into a folder holding a
    complete earlier result, left only policy.json and report.md there."""
    out = tmp_path / "out"
    args = ["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(out), "--samples", "200",
            "--max-drop", "0.05", "--min-bits", "8", "--max-bits", "8", "--quiet"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    status = main(args[:-5] + ["--min-bits", "10", "--max-bits", "10", "--target", "int8-builtin", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and "model.tflite not written" in err[-1] and "are unchanged" in err[-1], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unwritable_output_is_refused_before_the_search(user_files: dict, tmp_path, capsys, monkeypatch) -> None:
    """Issue 24 item 8: an output location that cannot be written (here under a file; a read-only
    folder alike, for users who are not root) was reported only after the whole search."""
    import fxpq_keras.search as search

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(search.FxPQNet, "quantize", lambda *a, **k: pytest.fail("the search ran"))
    status = main(["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(blocker / "out"),
                   "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "cannot write the output directory" in err[0], err


def test_concurrent_runs_and_killed_runs(user_files: dict, tmp_path, capsys, monkeypatch) -> None:
    """Issue 24 items 9 and 10: a second run into a folder another run is writing is refused (both
    used to exit 0, one's results silently lost); what a SIGKILL leaves beside the folder (a staging
    folder; the earlier results moved aside between the two renames) is cleaned up or put back by
    the next run; SIGTERM while writing cleans up like an interrupt."""
    import os
    import signal

    import fxpq_keras.report as report
    from fxpq_keras.commands import StagedOutputDir

    out = tmp_path / "out"
    holder = StagedOutputDir(str(out), ("policy.json",))  # another run, between its checks and its end
    args = ["quantize", user_files["keras"], "-d", user_files["nolabels"], "-o", str(out), "--samples", "200",
            "--max-drop", "0.05", "--min-bits", "8", "--max-bits", "8", "--quiet"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another fxpq run is writing" in err[0], err
    holder.release()

    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a run killed between its two renames: OUTDIR missing, the results in .out.tmp-X.old, a staging folder
    os.rename(out, tmp_path / ".out.tmp-dead.old")
    (tmp_path / ".out.tmp-dead2").mkdir()
    (tmp_path / ".out.tmp-dead2" / "policy.json").write_text("{}")
    StagedOutputDir(str(out), ("policy.json", "report.md", "report.png", "model.tflite")).release()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")) == []

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(report, "markdown", terminated)  # SIGTERM while the files are being written
    assert main(args[:-3] + ["--min-bits", "7", "--max-bits", "7", "--quiet"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
