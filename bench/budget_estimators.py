"""Which label-free estimate of the budget loss predicts held-out data? Measured on many policies per
zoo model (docs/algorithm.md, "Prediction for unseen data").

    .venv/bin/python bench/budget_estimators.py [--models a,b] [--samples 512] [--policies 12] [--json F]
    .venv/bin/python bench/budget_estimators.py --searched [--models a,b]   # predicted vs held-out
    .venv/bin/python bench/budget_estimators.py --intervals [--models a,b] [--budgets 'top1=..;snr=..'] [--shift S]

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

`--intervals` checks the interval (fxpq_keras/search/interval.py, docs/algorithm.md "Interval"): one
PrecisionSearch per model and budget (resnet8 and mobilenet_v1_025 at the first budget only), whose
final and trail policies' per-sample losses on the check set, the validation copies, the calibration
samples and the test split are cached under `$FXPQ_BENCH_CACHE/intervals/` (`collect`), so re-fitting
never searches again. From those arrays: each rule's walk-back (old binomial interval, new honest
one), predicted interval against held-out loss, and the shift constant fitted leave-one-model-out
with the coverage it gets on the model left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.models import MODELS, ZOO, calibration_set, trained  # noqa: E402
from fxpq_keras.search.adaptation import PrecisionSearch, SearchOptions  # noqa: E402
from fxpq_keras.search.budget import predict_drop, predict_mean_loss, predict_relative_mse  # noqa: E402
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


INTERVAL_VERSION = 1  # bump when what `collect` stores changes (the cache key holds it)
TRAIL_TAIL, TRAIL_SPREAD = 12, 6  # trail policies kept: the last ones (a walk-back lands there) + spread ones


def per_sample(search: PrecisionSearch, policy: Any, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per-sample losses of `policy` on every set (inputs, teacher outputs): flips (top1) or noise power
    (snr; signal power is the policy-free teacher's, stored once)."""
    search._sync(policy)
    out = {}
    for k, (x, ref) in sets.items():
        q = predict(search.qmodel, x)
        if search.metric == "top1":
            out[k] = (np.argmax(q, -1) != np.argmax(ref, -1)).astype(np.uint8)
        elif search.metric == "snr":
            out[k] = np.sum((q.reshape(len(x), -1).astype(np.float64) - ref.reshape(len(x), -1)) ** 2, axis=1)
        else:  # a task metric (anomaly): its own per-sample losses, as the search measures them
            out[k] = search.budget.task.measured(ref, q, x)
    return out


def collect(name: str, samples: int, max_drop: float, metric: str | None = None) -> dict[str, np.ndarray]:
    """One search of `name` (PrecisionSearch, the default options of bench/quality.py) and per-sample
    losses of its final policy and of trail policies on the search's own sets (the decision-free check
    set it accepted steps on, the validation copies) and on the held-out test split. Cached under
    `$FXPQ_BENCH_CACHE/intervals/` (keyed by the trained model, samples, budget and INTERVAL_VERSION),
    so estimators are re-fitted on these arrays without searching again."""
    from bench.models import model_path
    from fxpq_keras.search.adaptation import VALIDATION_COPIES

    model, data = trained(name)
    key = f"{model_path(name).stem}-{samples}-{max_drop:g}-v{INTERVAL_VERSION}" + (f"-{metric}" if metric else "")
    path = Path(os.environ.get("FXPQ_BENCH_CACHE", Path(__file__).resolve().parents[1] / ".cache" / "bench"))
    path = path / "intervals" / f"{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    x_cal, _ = calibration_set(data, samples)
    t = time.perf_counter()
    search = PrecisionSearch(model, x_cal, options=SearchOptions(max_accuracy_drop=max_drop, samples=len(x_cal),
                                                                 seed=0, float_input=False, metric=metric or "auto"))
    state = search.run()
    seconds = time.perf_counter() - t
    x_te = data["x_test"]
    sets = {"check": search.check_x, "validation": search.validation_x, "calib": search.calibration.x, "test": x_te}
    sets = {k: (v, predict(model, v)) for k, v in sets.items()}
    trail = list(search.trail)
    idx = sorted(set(range(max(len(trail) - TRAIL_TAIL, 0), len(trail)))
                 | set(np.linspace(0, max(len(trail) - 1, 0), TRAIL_SPREAD).astype(int).tolist())) if trail else []
    policies = [state.policy] + [trail[i] for i in idx]
    rows = [per_sample(search, pol, sets) for pol in policies]
    out: dict[str, np.ndarray] = {k: np.stack([r[k] for r in rows]) for k in sets}
    if search.metric == "snr":
        for k, (v, ref) in sets.items():
            out[f"{k}_signal"] = np.sum(ref.reshape(len(v), -1).astype(np.float64) ** 2, axis=1)
    out.update(metric=np.array(search.metric), trail_index=np.array([-1] + idx), trail_length=np.array(len(trail)),
               copies=np.array(VALIDATION_COPIES), budget=np.array(max_drop), seconds=np.array(seconds),
               budget_met=np.array(bool(state.budget_met)), paper_x=np.array([p.memory().compression_total
                                                                              for p in policies]),
               walked_back=np.array(sum(s.action == "back" for s in state.trajectory)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


BAND = 0.06  # coverage is counted over policies whose held-out loss is at most this (a 1 % budget decides there)
HEAVY = ("resnet8", "mobilenet_v1_025")  # ~10 GB and minutes per search: searched at the first budget only
SHIFTS = tuple(round(0.05 * i, 2) for i in range(41))  # the grid the shift constant is fitted on


def interval_rows(d: dict[str, np.ndarray], shift: float) -> list[dict[str, Any]]:
    """Per stored policy of one collected search, in trail order (the final policy last): the held-out
    loss, the old interval (binomial on the validation copies as if independent) and the new one
    (`interval.py`: clustered, Wilson, `shift`; `sel`: with the winner's-curse term too), each also as a
    predictive interval for a held-out set of the test split's size."""
    from fxpq_keras.search.interval import (
        copy_clusters,
        drop_estimate,
        predictive,
        relative_mse_estimate,
        with_selection,
    )

    copies = int(d["copies"])
    top1 = str(d["metric"]) == "top1"
    order = sorted(range(1, len(d["test"])), key=lambda r: int(d["trail_index"][r]))
    last = order[-1] if order else None
    if last is None or not (np.array_equal(d["validation"][0], d["validation"][last])
                            and np.array_equal(d["test"][0], d["test"][last])):
        order.append(0)  # the final policy is not the trail's last one (a restart from uniform)
    rows = []
    for r in order:
        v = d["validation"][r].astype(np.float64)
        n, m = len(v) // copies, len(d["test"][r])
        clusters = copy_clusters(copies, n)
        if top1:
            held = float(d["test"][r].mean())
            old = predict_drop(v)
            new = drop_estimate(v, clusters=clusters, shift=shift)
            sel = with_selection(new, v.reshape(copies, n), d["check"][r].astype(np.float64))
            per_var = None
        elif str(d["metric"]) == "snr":
            held = float(d["test"][r].sum() / d["test_signal"].sum())
            s = d["validation_signal"]
            old = predict_relative_mse(v, s)
            new = sel = relative_mse_estimate(v, s, clusters=clusters, shift=shift)
            per_var = float(np.var((v - new.loss * s) / s.mean()))
        else:  # a task metric's mean per-sample loss (anomaly)
            held = float(d["test"][r].mean())
            old = predict_mean_loss(v)
            new = sel = predict_mean_loss(v, clusters=clusters, shift=shift)
            per_var = float(np.var(v))
        rows.append({"trail": int(d["trail_index"][r]), "held": held, "test": m, "old": old, "new": new,
                     "sel": sel, "paper_x": float(d["paper_x"][r]), "old_p": predictive(old, m, per_var),
                     "new_p": predictive(new, m, per_var), "sel_p": predictive(sel, m, per_var)})
    return rows


def walked_back(rows: list[dict[str, Any]], key: str, budget: float, z: float = 1.0) -> dict[str, Any]:
    """The search's final policy under the rule `key` ("old", "new", "sel"): its walk-back
    (`budget.latest_within`) along the stored trail policies, with the search's margin_sigma `z`."""
    from fxpq_keras.search.budget import latest_within

    return rows[latest_within(len(rows), lambda i: rows[i][key].upper(z) <= budget + 1e-12)]


def covered(est: Any, held: float, z: float = 1.645) -> tuple[bool, bool]:
    """(inside the two-sided interval, under its upper end) of a held-out loss."""
    lo, hi = est.interval(z)
    return lo <= held <= hi, held <= hi


def coverage(rows: list[dict[str, Any]], key: str) -> tuple[float, float, int]:
    """(two-sided, upper) coverage of `key`'s intervals over the rows in the band that are not trivially
    zero (nothing predicted, nothing held out), and their count."""
    pts = [r for r in rows if r["held"] <= BAND and (r["held"] > 0 or r[key].loss > 0)]
    if not pts:
        return math.nan, math.nan, 0
    c = np.array([covered(r[key], r["held"]) for r in pts])
    return float(c[:, 0].mean()), float(c[:, 1].mean()), len(pts)


def fit_shift(groups: list[list[dict[str, np.ndarray]]], rate: float = 0.9, key: str = "new_p") -> float:
    """The smallest shift constant on SHIFTS whose predictive intervals cover at least `rate` (two-sided)
    and (1 + rate) / 2 (upper end) of the policies of every one of `groups` (a model's searches pooled):
    a budget is a promise on each model, not on the zoo's average (as the blend share's choice)."""
    for shift in SHIFTS:
        cov = [coverage([r for d in g for r in interval_rows(d, shift)], key) for g in groups]
        cov = [c for c in cov if c[2]]
        if cov and min(c[0] for c in cov) >= rate and min(c[1] for c in cov) >= (1 + rate) / 2:
            return shift
    return SHIFTS[-1]


def held_out_shift(searches: dict[str, list[dict[str, np.ndarray]]], name: str, i: int,
                   key: str = "new_p") -> tuple[float, str]:
    """The shift constant for search `i` of model `name`, fitted without it: on the other models of the
    same metric, or (the metric's only model: the autoencoder for snr) on the model's other budgets."""
    metric = str(searches[name][0]["metric"])
    others = [ds for n, ds in searches.items() if n != name and str(ds[0]["metric"]) == metric]
    if others:
        return fit_shift(others, key=key), "other models"
    rest = [[d] for j, d in enumerate(searches[name]) if j != i]
    return (fit_shift(rest, key=key), "other budgets") if rest else (0.0, "none")


def _fmt(metric: str, v: float) -> str:
    if metric == "snr":
        return "inf dB" if v <= 0 else f"{-10 * math.log10(v):.2f} dB"
    return f"{v:.2%}"


def _interval(metric: str, est: Any) -> str:
    lo, hi = est.interval()
    if metric == "snr":
        return f"{_fmt(metric, hi)}..{_fmt(metric, lo)}"
    return f"{_fmt(metric, lo)}..{_fmt(metric, hi)}"


def intervals(models: list[str], samples: int, budgets: dict[str, list[float]], shift: float | None) -> None:
    """Print the honest-interval tables (docs/algorithm.md, "Interval"): per search, predicted against
    held-out, and leave-one-model-out coverage of the fitted shift constant."""
    searches: dict[str, list[dict[str, np.ndarray]]] = {}
    for name in models:
        # the autoencoder: the output-SNR budget and the anomaly-score one, each a "model" of its metric
        for metric in ("snr", "anomaly") if ZOO[name].metric != "top1" else ("top1",):
            row = name if metric in ("top1", "snr") else f"{name} ({metric})"
            for b in budgets.get(metric, [])[:1] if name in HEAVY else budgets.get(metric, []):
                t = time.perf_counter()
                searches.setdefault(row, []).append(collect(name, samples, b, None if row == name else metric))
                print(f"[{row} at {b:g}: {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    metrics = sorted({str(ds[0]["metric"]) for ds in searches.values()})
    fitted = {m: fit_shift([ds for ds in searches.values() if str(ds[0]["metric"]) == m]) for m in metrics}
    held = {(n, i, k): held_out_shift(searches, n, i, k) if shift is None else (shift, "given")
            for n, ds in searches.items() for i in range(len(ds)) for k in ("new_p", "sel_p")}
    print("Shift constants fitted on every search of a metric: "
          + ", ".join(f"{m} {fitted[m]:g}" for m in metrics) + ".\n")
    print("Final policy of each search under each rule (its walk-back along the stored trail, margin_sigma 1): old = "
          "binomial on the validation copies as if independent; new = interval.py with the shift fitted without "
          "this model (on the other models of its metric; the only snr model: on its other budgets). covers: the "
          "held-out loss inside the predictive 90 % interval for the test split's size (the interval shown is for "
          "unseen data at large); x = paper compression.\n")
    print("| model | budget | old: held-out | old: predicted (90 % interval) | covers | x | new: held-out | "
          "new: predicted (90 % interval) | covers | x | shift (fitted on) |")
    print("|---|---:|---:|---:|:---:|---:|---:|---:|:---:|---:|---:|")
    for name, ds in searches.items():
        for i, d in enumerate(ds):
            metric, budget = str(d["metric"]), float(d["budget"])
            cells = [name, _fmt(metric, budget)]
            s_new, basis = held[(name, i, "new_p")]
            for key, s in (("old", 0.0), ("new", s_new)):
                r = walked_back(interval_rows(d, s), key, budget)
                ok = covered(r[key + "_p"], r["held"])[0]
                cells += [_fmt(metric, r["held"]) + ("" if r["held"] <= budget else " OVER"),
                          f"{_fmt(metric, r[key].loss)} ({_interval(metric, r[key])})", "yes" if ok else "NO",
                          f"{r['paper_x']:.2f}x"]
            print("| " + " | ".join(cells) + f" | {s_new:g} ({basis}) |")
    print("\nLeave one model out: coverage (two-sided 90 % / under the upper end 95 %, predictive for the test "
          "split's size) over every stored policy of the model left out (final and trail, held-out loss <= 6 %, "
          "not both zero) with the shift fitted without it (new: without, new+sel: with the winner's-curse term), "
          "and the interval's mean half-width (points of loss; snr: of relative MSE).\n")
    print("| model left out | policies | old | shift (new) | new | shift (new+sel) | new+sel |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    tot: dict[str, list[tuple[float, float, int, float]]] = {"old_p": [], "new_p": [], "sel_p": []}
    for name, ds in searches.items():
        cells = [name]
        for key in ("old_p", "new_p", "sel_p"):
            shifts = [0.0 if key == "old_p" else held[(name, i, key)][0] for i in range(len(ds))]
            rows = [r for d, s in zip(ds, shifts) for r in interval_rows(d, s)]
            cov = coverage(rows, key)
            width = float(np.mean([1.645 * r[key[:3]].stderr for r in rows if r["held"] <= BAND]))
            tot[key].append((*cov, width))
            cells.append(str(cov[2]) if key == "old_p" else "/".join(sorted({f"{s:g}" for s in shifts})))
            cells.append(f"{cov[0]:.0%} / {cov[1]:.0%}, +-{100 * width:.2f}")
        print("| " + " | ".join(cells) + " |")
    cells = ["mean over models", str(sum(c[2] for c in tot["old_p"] if c[2]))]
    for key in ("old_p", "new_p", "sel_p"):
        cov = [c for c in tot[key] if c[2]]
        if key != "old_p":
            cells.append("")
        cells.append(f"{np.mean([c[0] for c in cov]):.0%} / {np.mean([c[1] for c in cov]):.0%}, "
                     f"+-{100 * np.mean([c[3] for c in cov]):.2f}")
    print("| " + " | ".join(cells) + " |")


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
    p.add_argument("--intervals", action="store_true",
                   help="instead: predicted interval against held-out loss per search (cached), with the "
                   "leave-one-model-out coverage of the interval's shift constant")
    p.add_argument("--budgets", default="top1=0.01,0.005,0.02;snr=0.01,0.003,0.0005;anomaly=0.01,0.03,0.1",
                   help="--intervals: the budgets searched per metric (resnet8 and mobilenet_v1_025: the first only)")
    p.add_argument("--shift", type=float, default=None, help="--intervals: use this shift constant instead of "
                   "fitting it")
    args = p.parse_args(argv)
    if args.intervals:
        budgets = {k: [float(v) for v in vals.split(",")] for k, _, vals in
                   (part.partition("=") for part in args.budgets.split(";"))}
        intervals([m for m in args.models.split(",") if m], args.samples, budgets, args.shift)
        return 0
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
