"""Which label-free estimate of the budget loss predicts held-out data? Measured on many policies per
zoo model (docs/algorithm.md, "Prediction for unseen data").

    .venv/bin/python bench/budget_estimators.py [--models a,b] [--samples 512] [--policies 12] [--json F]
    .venv/bin/python bench/budget_estimators.py --searched [--models a,b]   # predicted vs held-out

For every zoo model (bench/models.py, cached) a fixed family of policies: uniform widths 4..10 bits
(range-derived fracs) and `--policies` random mixed ones around the knee (every weight / activation
width drawn from knee+1 -+ 1 or 2 bits). For each policy the fake-quant model runs on the held-out test split
and on label-free check sets built from the calibration samples (training split, as bench/quality.py
draws them): the samples themselves, blends `(1-s) x_i + s x_j` at several shares `s` (one seeded
partner, or two pooled), a blend with a partner of another teacher class, and Gaussian input noise. Each
set's loss against the float model (top-1 flip rate, or relative output MSE for the autoencoder) is
an estimator of the held-out loss; `--json` keeps every figure, and the printed tables give per model
and estimator: bias (predicted - held-out), RMSE, coverage (held-out <= predicted + 1 standard error)
and false accepts at the 1 % budget (policies the estimator accepts whose held-out loss is over 1 %),
over the policies whose held-out loss is at most 6 % (the region a 1 % budget decides in).
`--searched` instead runs the default search on every model and prints its prediction against the
held-out loss, with its compression against the best uniform policy's. `--family` adds the
leave-one-model-out choice of an estimator (the weakest with no false accept at 1 %, or with bias
>= 0, on every other top-1 model) and how that choice does on the model left out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.models import MODELS, ZOO, calibration_set, trained  # noqa: E402
from fxpq_keras.search.adaptation import PrecisionSearch, SearchOptions  # noqa: E402
from fxpq_keras.search.budget import predict_drop, predict_relative_mse  # noqa: E402
from fxpq_keras.search.evaluator import predict  # noqa: E402
from fxpq_keras.search.phases.uniform import uniform_policy  # noqa: E402

SHARES = (0.1, 0.15, 0.2, 0.25, 0.3)
NOISE = (0.25,)


def check_sets(x: np.ndarray, teacher: np.ndarray, top1: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """The candidate label-free check sets built from the calibration inputs `x`."""
    n = len(x)
    rng = np.random.default_rng(seed + 1)
    perms = [rng.permutation(n) for _ in range(2)]
    sets = {"calib": x}
    for s in SHARES:
        sets[f"blend{s:g}"] = (1 - s) * x + s * x[perms[0]]
    sets["blend0.15b"] = 0.85 * x + 0.15 * x[perms[1]]  # a second partner: blend0.15x2 pools both
    if top1:
        cls = np.argmax(teacher, -1)
        other = np.empty(n, np.int64)
        for i in range(n):
            pool = np.flatnonzero(cls != cls[i])
            other[i] = pool[rng.integers(len(pool))] if len(pool) else i
        sets["other0.2"] = 0.8 * x + 0.2 * x[other]
    sd = float(x.std())
    for sigma in NOISE:
        sets[f"noise{sigma:g}"] = x + np.random.default_rng(seed + 2).normal(0, sigma * sd, x.shape)
    return {k: v.astype(np.float32) for k, v in sets.items()}


def uniform(search: PrecisionSearch) -> list[tuple[str, Any]]:
    """Uniform 4..10-bit policies (weights and activations; biases stay at the start width)."""
    return [(f"uniform{b}", uniform_policy(search, b)) for b in range(4, 11)]


def mixed(search: PrecisionSearch, knee: int, n: int, rng: np.random.Generator) -> list[tuple[str, Any]]:
    """Random mixed policies: every weight / activation width drawn from knee + 1 -+ 1 or 2 bits."""
    out = []
    keys = [k for k in search.keys if k[1] != "bias"]
    for i in range(n):
        spread = int(rng.integers(1, 3))
        changes = []
        for key in keys:
            b = int(np.clip(knee + 1 + rng.integers(-spread, spread + 1), 2, 16))
            changes.append((key, b, search.frac_candidates(key, b)[0]))
        out.append((f"mixed{i}", search._with(search.start_policy, changes)))
    return out


def measure(name: str, samples: int, n_mixed: int) -> dict[str, Any]:
    model, data = trained(name)
    x_cal, _ = calibration_set(data, samples)
    x_te = data["x_test"]
    top1 = ZOO[name].metric == "top1"
    search = PrecisionSearch(model, x_cal, options=SearchOptions(samples=len(x_cal), seed=0, objective="paper",
                                                                 metric="top1" if top1 else "snr"))
    teacher_cal = predict(model, x_cal)
    sets = check_sets(x_cal, teacher_cal, top1) | {"test": x_te}
    refs = {k: predict(model, v) for k, v in sets.items()}

    def losses(policy: Any) -> dict[str, tuple[float, float]]:
        search._sync(policy)
        out = {}
        for k, v in sets.items():
            q = predict(search.qmodel, v)
            if top1:
                flips = np.argmax(q, -1) != np.argmax(refs[k], -1)
                e = predict_drop(flips)
            else:
                r = refs[k].reshape(len(v), -1).astype(np.float64)
                noise = np.sum((q.reshape(len(v), -1) - r) ** 2, axis=1)
                e = predict_relative_mse(noise, np.sum(r * r, axis=1))
            out[k] = (e.loss, e.stderr)
        return out

    rows = []
    for label, pol in uniform(search):
        rows.append({"policy": label, "paper_x": pol.memory().compression_total, "loss": losses(pol)})
    knee = next((int(r["policy"][7:]) for r in rows if r["loss"]["calib"][0] <= 0.03), 10)
    for label, pol in mixed(search, knee, n_mixed, np.random.default_rng(0)):
        rows.append({"policy": label, "paper_x": pol.memory().compression_total, "loss": losses(pol)})
    return {"name": name, "metric": "top1" if top1 else "snr", "knee": knee, "rows": rows}


def stats(fig: dict[str, Any], est: str, z: float = 1.0, budget: float = 0.01, band: float = 0.06) -> dict[str, Any]:
    """bias, RMSE, coverage and false accepts of one estimator over the policies in the band."""
    p, s, h = [], [], []
    for r in fig["rows"]:
        lp, ls = estimate(r["loss"], est)
        lh = r["loss"]["test"][0]
        if lh <= band:
            p.append(lp)
            s.append(ls)
            h.append(lh)
    p, s, h = (np.asarray(v) for v in (p, s, h))
    if not len(p):
        return {"n": 0}
    up = p + z * s
    acc = up <= budget
    return {"n": int(len(p)), "bias": float(np.mean(p - h)), "rmse": float(np.sqrt(np.mean((p - h) ** 2))),
            "coverage": float(np.mean(h <= up)), "accepted": int(acc.sum()),
            "false_accepts": int(np.sum(acc & (h > budget)))}


def estimate(loss: dict[str, tuple[float, float]], est: str) -> tuple[float, float]:
    """An estimator by name: a set's loss, or 'max(a,b,...)' the worst of several (by upper bound)."""
    if est.startswith("max(") and est.endswith(")"):
        parts = [estimate(loss, e) for e in est[4:-1].split(",")]
        return max(parts, key=lambda t: t[0] + t[1])
    if est == "blend0.15x2":  # two partners per input pooled: the mean, and the standard error of a mean
        (a, sa), (b, sb) = loss["blend0.15"], loss["blend0.15b"]
        return (a + b) / 2, math.hypot(sa, sb) / 2
    return loss[est]


def searched(name: str, samples: int, max_drop: float) -> str:
    """One table row: the default search's prediction against the held-out loss, and its compression
    against the best uniform policy's (paper total and device bytes)."""
    from fxpq_keras.search import FxPQNet

    model, data = trained(name)
    x_cal, _ = calibration_set(data, samples)
    t = time.perf_counter()
    res = FxPQNet(max_drop, samples=len(x_cal), seed=0, verbose=0).quantize(model, x_cal)
    seconds = time.perf_counter() - t
    ref, q = predict(model, data["x_test"]), predict(res.model, data["x_test"])
    if res.metric == "top1":
        held = float(np.mean(np.argmax(q, -1) != np.argmax(ref, -1)))
        fmt = "{:.2%}".format
    else:
        ref = ref.astype(np.float64)
        held = float(np.sum((q - ref) ** 2) / max(float(np.sum(ref ** 2)), 1e-30))
        fmt = lambda v: f"{-10 * math.log10(v):.2f} dB" if v > 0 else "inf dB"  # noqa: E731
    lo, hi = res.predicted_interval
    ok = "ok" if held <= max_drop else "OVER"
    u = res.best_uniform_policy
    uni = "none" if u is None else (f"{res.best_uniform_bits}, {u.memory().compression_total:.2f}x, "
                                    f"{res.cost(u):,} B")
    backs = sum(s.action == "back" for s in res.trajectory)
    restart = "yes" if any(s.action == "uniform" for s in res.trajectory) else "no"
    interval = f"{fmt(hi)}..{fmt(lo)}" if res.metric == "snr" else f"{fmt(lo)}..{fmt(hi)}"
    return (f"| {name} | {fmt(res.predicted_loss)} ({interval}) | {fmt(held)} {ok} | {uni} | "
            f"{res.memory.compression_total:.2f}x, {res.cost():,} B | {backs} | {restart} | {res.evaluations} | "
            f"{seconds:.0f} |")


CRITERIA = {
    "no false accept": lambda st: st["false_accepts"] == 0,
    "bias >= 0": lambda st: st["bias"] >= 0,
}


def leave_one_model_out(figs: list[dict[str, Any]], family: list[str], criterion: str) -> list[str]:
    """For every model: the weakest estimator of `family` (ordered weakest first) meeting `criterion`
    on every OTHER model of the same metric, and how it does on the model left out (table rows)."""
    ok = CRITERIA[criterion]
    rows = []
    for f in figs:
        others = [g for g in figs if g is not f and g["metric"] == f["metric"]]
        chosen = next((e for e in family if all(stats(g, e)["n"] == 0 or ok(stats(g, e)) for g in others)),
                      family[-1])
        st = stats(f, chosen)
        rows.append(f"| {f['name']} | {criterion} | {chosen} | {st['n']} | {st['bias']:+.2%} | {st['rmse']:.2%} | "
                    f"{st['coverage']:.0%} | {st['accepted']} | {st['false_accepts']} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--policies", type=int, default=12, help="random mixed policies per model")
    p.add_argument("--json", default=None, help="also write every figure here")
    p.add_argument("--load", default=None, help="analyse figures written by --json instead of measuring")
    p.add_argument("--estimators", default=None, help="estimators separated by ';' (e.g. 'blend0.15;max(a,b)')")
    p.add_argument("--family", default="blend0.1;blend0.15;blend0.2;blend0.25;blend0.3",
                   help="estimators ordered weakest first, for the leave-one-model-out choice (';'-separated)")
    p.add_argument("--searched", action="store_true",
                   help="instead: run the default search per model, predicted against held-out loss")
    p.add_argument("--max-drop", type=float, default=0.01)
    args = p.parse_args(argv)
    if args.searched:
        print("| model | predicted (90 % interval) | held-out | best uniform: bits, paper x, device B | "
              "FxP-QNet: paper x, device B | walk-backs | restart from uniform | evals | search s |")
        print("|---|---:|---:|---:|---:|---:|:---:|---:|---:|")
        for name in args.models.split(","):
            print(searched(name, args.samples, args.max_drop), flush=True)
        return 0
    if args.load:
        figs = json.loads(Path(args.load).read_text())
    else:
        figs = []
        t = time.perf_counter()
        for name in args.models.split(","):
            figs.append(measure(name, args.samples, args.policies))
            print(f"[{name} measured, {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(figs))
    ests = (args.estimators or "calib;blend0.1;blend0.15;blend0.15x2;blend0.2;blend0.25;blend0.3;other0.2;"
            "noise0.25").split(";")
    print("Per model and estimator: bias / RMSE (points of loss) / coverage / false accepts at 1 % "
          "(policies with held-out loss <= 6 %: n)\n")
    print("| model | n | " + " | ".join(ests) + " |")
    print("|---|---:|" + "---:|" * len(ests))
    for f in figs:
        cells = []
        n = 0
        for e in ests:
            try:
                st = stats(f, e)
            except KeyError:
                cells.append("-")
                continue
            n = st["n"]
            cells.append("-" if not n else f"{100 * st['bias']:+.2f} / {100 * st['rmse']:.2f} / "
                         f"{st['coverage']:.0%} / {st['false_accepts']}")
        print(f"| {f['name']} ({f['metric']}) | {n} | " + " | ".join(cells) + " |")
    family = [e for e in args.family.split(";") if e]
    if family:
        print(f"\nLeave one model out: the weakest of {', '.join(family)} meeting the criterion on every other "
              "top-1 model, measured on the model left out.\n")
        print("| model left out | criterion | chosen on the others | policies | bias | RMSE | coverage | "
              "accepted at 1 % | false accepts |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        top1 = [f for f in figs if f["metric"] == "top1"]
        for criterion in CRITERIA:
            print("\n".join(leave_one_model_out(top1, family, criterion)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
