"""`fxpq quantize MODEL -d DATA.npz -o OUTDIR`: the FxP-QNet search from the command line.

Writes OUTDIR/policy.json, OUTDIR/report.md, OUTDIR/report.png and OUTDIR/model.tflite
(`--target fxp|int8-builtin|builtin`), all at once: they are written into a temporary folder beside OUTDIR
that then replaces OUTDIR whole (an interrupt leaves OUTDIR as it was; earlier results are never
mixed with new ones). An OUTDIR holding other files is refused before the search.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..formats import ACTIVATION_SCALES
from . import (
    StagedOutputDir,
    bit_width,
    drop_fraction,
    head_room,
    load_array,
    load_keras_model,
    load_npz,
    positive_int,
    slowdown,
)

# --per-channel / --align-ranges -> SearchOptions.per_channel / align_ranges
PER_CHANNEL = {"auto": "auto", "on": True, "off": False}
# every file quantize writes: an existing output folder holding only these is replaced whole
OUTPUTS = ("policy.json", "report.md", "report.png", "model.tflite")
CHECK_CHUNK = 64  # samples per integer-reference run when checking the written file (bounds its memory)

EPILOG = """\
examples:
  fxpq quantize model.keras -d calib.npz -o out/
  fxpq quantize model.h5 -d calib.npz -o out/ --max-drop 0.02 --memory-target 20000 --per-channel off
  fxpq quantize model.keras -d calib.npz -o out/ --labels calib_labels.npy     # budget: accuracy drop
  fxpq quantize ae.keras -d normal.npz -o out/ --metric anomaly                 # an autoencoder's score
  fxpq quantize model.keras -d calib.npz -o out/ --metric my_metrics:abs_error --max-drop 0.05

MODEL is a .keras or .h5 file saved by Keras 3 (`import keras` since TensorFlow 2.16; translated
layer by layer into tf_keras, fxpq_keras/keras3.py) or by tf_keras, or a SavedModel folder saved by
tf_keras. Its layers must be among those README.md lists (one input, one output).
DATA is an .npz with the calibration inputs as 'x' (shape [N, ...input shape]) and optionally the
labels as 'y' (only reported; the search needs no labels: the float model is the teacher).
--metric: top1 budgets the drop of top-1 agreement with the float model; snr budgets the output
error against the float model (relative MSE <= --max-drop, i.e. output SNR >= -10 log10(--max-drop)
dB: 20 dB for 0.01), for outputs that are not class scores (regression, autoencoders); anomaly
budgets the mean relative change of an autoencoder's anomaly score (reconstruction error against
the input). module:function imports a function (teacher_outputs, student_outputs, inputs) ->
per-sample loss (shape (N,)) or a fxpq_keras.TaskMetric subclass; --max-drop then limits its mean.
auto picks top1 for softmax/class-score outputs and snr otherwise; the summary says which metric and
limit are in force.
--labels LABELS.npy (one integer per calibration sample, in DATA's order): with a class-score model
the budget becomes the accuracy drop on those labels (float accuracy minus quantized accuracy, as in
the FxP-QNet paper); with --metric anomaly (1 = anomalous) the report adds the ROC AUC.
Exit status 3: the calibration set cannot resolve the budget (one top-1 flip alone would break it;
nothing written, stderr names the samples needed; --allow-unresolved searches anyway), or the files
were written but the budget or --memory-target is not met by what was written (stderr says which).
"""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("quantize", help="search a mixed-precision fixed-point policy (FxP-QNet)",
                       description="Search a mixed low-precision dynamic fixed-point policy for MODEL (a Keras "
                       "classifier) on calibration inputs, keeping the top-1 drop against the float "
                       "model within --max-drop, then write the policy, a report and the .tflite. "
                       "Labels are optional (reported when given). See docs/algorithm.md.",
                       epilog=EPILOG)
    p.add_argument("model", help="float Keras classifier: a .keras or .h5 file written by Keras 3 or by "
                   "tf_keras (Keras 2), "
                   "or a tf_keras SavedModel folder")
    p.add_argument("-d", "--data", required=True, metavar="DATA.npz",
                   help="calibration .npz holding x (inputs) and optionally y (labels)")
    p.add_argument("-o", "--outdir", required=True, help="output directory (created if missing)")
    p.add_argument("--max-drop", type=drop_fraction, default=0.01,
                   help="budget limit in (0, 1): max top-1 drop vs the float model (metric top1) or max relative "
                   "output MSE (metric snr)")
    p.add_argument("--objective", choices=("device", "paper"), default="device",
                   help="what a step saves: device bytes (packed weights + peak RAM at container sizes) or the "
                   "paper's bit count (weights + biases + activations)")
    p.add_argument("--metric", default="auto", metavar="{auto,top1,snr,anomaly,MODULE:FUNCTION}",
                   help="budget metric: top1 agreement or output SNR against the float model, anomaly (an "
                   "autoencoder's reconstruction error against the input), or a user's per-sample loss "
                   "function imported as module:function (auto: top1 for class scores, snr otherwise)")
    p.add_argument("--labels", default=None, metavar="LABELS.npy",
                   help="integer labels of the calibration samples (.npy, or .npz as 'y'): the budget becomes the "
                   "accuracy drop on them (class scores), or the report adds the AUC (--metric anomaly)")
    p.add_argument("--margin-sigma", type=head_room, default=1.0, metavar="Z",
                   help="standard errors of head-room the budget keeps: a step is taken only when its predicted "
                   "loss plus Z standard errors is within --max-drop (0..5; default 1; 0 judges the prediction "
                   "alone: more steps, and a budget held on unseen data less often)")
    p.add_argument("--allow-unresolved", action="store_true",
                   help="search even when the calibration set is too small to resolve the budget (default: exit 3 "
                   "naming the samples needed)")
    p.add_argument("--memory-target", type=positive_int, default=None, metavar="BYTES",
                   help="also stop as soon as the objective's memory fits this many bytes (device: weights and "
                   "biases as stored + peak RAM; paper: weights+biases+activations bits / 8) "
                   "(default: none, lower as far as the budget allows)")
    p.add_argument("--max-slowdown", type=slowdown, default="auto", metavar="X|none|auto",
                   help="device objective: keep the estimated Cortex-M4 instructions at most the --speed-reference's "
                   "on this model times X (1.0: no slower than TFLite int8 with CMSIS-NN; the search runs without the "
                   "cap first and searches again under it only when that result is above it and the budget leaves the "
                   "cap within reach; default auto: 1.0 for target fxp, 1.1x its uniform W8A8 file for --target "
                   "builtin, docs/algorithm.md 'Speed cap'; none or 0: no cap)")
    p.add_argument("--speed-reference", choices=("int8", "uniform8"), default="int8",
                   help="what --max-slowdown is a factor of: int8 = the model as a TFLite int8 file in TFLM with "
                   "CMSIS-NN (estimated), uniform8 = the fxp file at uniform 8 bits in the fxpq kernels")
    p.add_argument("--min-bits", type=bit_width("min_bits"), default=2,
                   help="lowest bit width of any data structure (2..16)")
    p.add_argument("--max-bits", type=bit_width("max_bits"), default=16,
                   help="start (highest) bit width of every data structure")
    p.add_argument("--samples", type=positive_int, default=1024,
                   help="calibration samples used (all predict the budget, the first half ranks steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset (same seed, same policy)")
    p.add_argument("--per-channel", nargs="?", const="on", default="off", choices=tuple(PER_CHANNEL),
                   help="weight fracs per output channel: off (default) = one frac per tensor, on = every "
                   "weighted layer, auto = chosen per layer by the prediction error; a bare --per-channel means on")
    p.add_argument("--align-ranges", choices=tuple(PER_CHANNEL), default="auto",
                   help="range alignment (rescale channels through ReLU so activations fill their power-of-two "
                   "format; exact in float, recorded in policy.json): auto (default) = in the RAM-first pass "
                   "only, on = every pass, off = never")
    p.add_argument("--integer-input", action="store_true",
                   help="write model.tflite with an integer input (as TFLite int8 files take: no float32 input "
                   "buffer in RAM) and plan the search's RAM for that file (default: float32 input)")
    p.add_argument("--target", choices=("fxp", "int8-builtin", "builtin"), default="fxp",
                   help="model.tflite target: custom FXP_* ops (fxp); stock int8 ops (int8-builtin: 8-bit "
                   "power-of-two formats); or stock ops only, searched per layer among what stock TFLM runs "
                   "(builtin: weights int8 or int4, activations int8 or int16; --min-bits/--max-bits and "
                   "--per-channel do not apply)")
    p.add_argument("--activation-scales", choices=ACTIVATION_SCALES, default="asymmetric",
                   help="--target builtin: activation scales min(max|a| / qmax, 2^-frac) from the calibration ranges "
                   "with signed int8 tensors asymmetric over the calibration [min, max] (asymmetric, TFLite's int8 "
                   "rule; docs/format.md 7.1), the same all symmetric (float) or 2^-frac (pow2); other targets: "
                   "power-of-two always")
    return p


def run(args: argparse.Namespace) -> int:
    began = time.perf_counter()  # the whole command's time: loading TensorFlow and the model, search, files
    quiet = getattr(args, "quiet", False)
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"model file not found: {args.model}")
    if args.min_bits > args.max_bits:
        raise ValueError(f"--min-bits {args.min_bits} must not exceed --max-bits {args.max_bits}")
    x, y = load_npz(args.data, "calibration inputs")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise ValueError(f"{args.data}: {len(y) if y.ndim else 0} labels for {len(x)} calibration samples")
    labels = None
    if args.labels is not None:
        labels = load_array(args.labels, "labels", "y")
        if labels.ndim != 1 or len(labels) != len(x):
            raise ValueError(f"--labels {args.labels}: {labels.shape} labels for {len(x)} calibration samples "
                             "(one integer per sample)")

    from ..host import limit_malloc_arenas

    limit_malloc_arenas()  # before TensorFlow's threads: they would each grow a heap of their own
    import fxpq_keras  # TensorFlow from here on: the checks above answer without it

    from ..flatbuffer import export_tflite
    from ..host import memory_size, peak_rss_bytes
    from ..progress import Progress
    from ..report import write_report
    from ..search import FxPQNet, UnresolvedBudgetError

    # validate every option before the (slow) model load and search
    progress = None if quiet else Progress()  # phase lines, then the search's bar or progress lines
    search = FxPQNet(args.max_drop, metric=args.metric, objective=args.objective, memory_target=args.memory_target,
                     max_slowdown=args.max_slowdown, speed_reference=args.speed_reference,
                     min_bits=args.min_bits, max_bits=args.max_bits, samples=args.samples, seed=args.seed,
                     per_channel=PER_CHANNEL[args.per_channel], float_input=not args.integer_input,
                     align_ranges=PER_CHANNEL[args.align_ranges], allow_unresolved=args.allow_unresolved,
                     margin_sigma=args.margin_sigma,
                     target="builtin" if args.target == "builtin" else "fxp",
                     activation_scales=args.activation_scales, verbose=0 if quiet else 1, progress=progress)
    if progress is not None:
        progress.phase(f"loading {args.model}")
    staged = StagedOutputDir(args.outdir, OUTPUTS)  # refuses a folder of other files before the search
    try:  # the folder's lock is held from here to the end
        model = load_keras_model(args.model)
        loaded = time.perf_counter()
        if labels is None and y is not None and args.metric == "anomaly":
            labels = y  # the npz's labels are only reported: for the anomaly metric that is its AUC
        result = (search.quantize(model, x, labels=labels) if labels is not None else
                  search.quantize(model, x, report_labels=y))
        searched = time.perf_counter()
    except UnresolvedBudgetError as exc:  # nothing written: the data cannot decide this budget
        staged.release()
        print(f"fxpq quantize: {exc}", file=sys.stderr)
        return 3
    except BaseException:
        staged.release()
        raise
    if progress is not None:
        progress.phase(f"writing the policy, the report and model.tflite to {args.outdir}")
    # the result's message names what is missed (budget, memory target) and why
    status = 0
    refused = ""
    problems = [result.message] if not result.budget_met or result.memory_target_met is False else []
    out = os.path.join(args.outdir, "model.tflite")
    with staged as tmp:  # all files appear together, replacing earlier results whole
        paths = {k: os.path.join(args.outdir, os.path.basename(v)) for k, v in write_report(result, tmp).items()}
        try:
            data = export_tflite(result.model, os.path.join(tmp, "model.tflite"), target=args.target,
                                 float_input=not args.integer_input, policy=result.policy)
            paths["tflite"] = f"{out} ({len(data)} bytes, target {args.target})"
        except (ValueError, fxpq_keras.FormatError) as exc:
            hint = "; use --target fxp (custom FXP_* ops, any format)" if args.target != "fxp" else ""
            kept = ""
            if staged.replaced:  # an earlier complete result is kept whole, not traded for half of one
                staged.discard()
                kept = f" (the earlier results in {args.outdir} are unchanged)"
            refused = f"fxpq quantize: error: {out} not written: {exc}{hint}{kept}"
            status = 1
        else:
            if progress is not None:
                progress.phase(f"checking model.tflite (integer reference) on the {len(result.budget_inputs):,} "
                               f"{result.budget_set.split(' (')[0]}")
            written = check_written(os.path.join(tmp, "model.tflite"), result)
            if written:
                problems.append(written)
    if staged.replaced and not staged.discarded and not quiet:
        print(f"replaced the earlier results in {args.outdir} (every file there is from this run)")
    if not quiet:
        print(result.summary())
        for path in paths.values():
            print(f"wrote {path}")
        end = time.perf_counter()
        print(f"time: {end - began:.1f} s for the whole command (loading TensorFlow and the model {loaded - began:.1f} "
              f"s, search {searched - loaded:.1f} s, writing and checking the files {end - searched:.1f} s); peak "
              f"memory (RSS) {memory_size(peak_rss_bytes())}")
    sys.stdout.flush()  # the errors below are the last lines, also when stdout and stderr share a pipe
    for problem in problems:
        print(f"fxpq quantize: {problem}", file=sys.stderr)
    if refused:
        print(refused, file=sys.stderr)
    return status or (3 if problems else 0)


def check_written(path: str, result) -> str | None:
    """Run the written .tflite (numpy reference) on the budget's inputs (validation copies) and measure it with
    the search's meter: a message when what was written breaks the budget's limit, else None."""
    import numpy as np

    from ..flatbuffer.interpreter import Interpreter

    interpreter = Interpreter(path)
    x = result.budget_inputs
    if not interpreter.info.float_input:  # an integer-input file takes the input's format integers
        from ..formats import quantize

        x = quantize(x, interpreter.graph.tensors[interpreter.graph.input].fmt)
    # in chunks: the integer reference holds int64 activations (and im2col copies) of every sample it runs
    outputs = np.concatenate([interpreter.predict(x[i:i + CHECK_CHUNK]) for i in range(0, len(x), CHECK_CHUNK)])
    m, _ = result.assess(outputs)
    if m.loss <= result.budget.max_loss:
        return None
    return (f"the written {os.path.basename(path)} breaks the budget ({result.budget.describe()}): it measures "
            f"{result.budget.format_loss(m.loss)} on the {m.samples:,} {result.budget_set}, against "
            f"{result.budget.format_loss(result.predicted_loss)} for the searched policy")
