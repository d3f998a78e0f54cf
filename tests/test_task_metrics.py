"""Task metrics, the labeled budget and the resolution check (issue 21 items 1 and 3).

Small models (digits MLP, a 64-16-64 autoencoder) and short searches: seconds each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fxpq_keras
from fxpq_keras._tf import keras
from fxpq_keras.cli import main
from fxpq_keras.search import FxPQNet, TaskMetric, UnresolvedBudgetError
from fxpq_keras.search.budget import Budget, Meter, predict_drop, predict_mean_loss
from fxpq_keras.search.interval import DEFAULT_SHIFT, SHIFT, interval_shift
from fxpq_keras.search.metric import (
    AnomalyScore,
    FunctionMetric,
    anomaly_scores,
    as_metric,
    load_metric,
    resolution_error,
    roc_auc,
)

FAST = {"max_bits": 8, "min_bits": 4, "verbose": 0, "seed": 0}


def abs_error(teacher: np.ndarray, student: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """A user's metric: mean absolute output error per sample, relative to the teacher's mean magnitude."""
    t = np.asarray(teacher, np.float64).reshape(len(teacher), -1)
    return np.abs(np.asarray(student).reshape(len(t), -1) - t).mean(axis=1) / np.abs(t).mean()


def wrong_shape(teacher, student, inputs):
    return np.zeros((len(teacher), 2))


def nan_loss(teacher, student, inputs):
    out = np.zeros(len(teacher))
    out[3] = np.nan
    return out


@pytest.fixture(scope="module")
def digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1200], y[:1200], epochs=15, batch_size=64, verbose=0)
    keras.utils.set_random_seed(2)
    ae = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                           keras.layers.Dense(64)])
    ae.compile(keras.optimizers.Adam(1e-2), "mse")
    normal = x[y != 0]  # "normal" machines: every digit but 0; anomalies: the zeros
    ae.fit(normal[:1000], normal[:1000], epochs=20, batch_size=64, verbose=0)
    return {"x": x, "y": y, "model": model, "ae": ae, "normal": normal}


# -- the metric protocol, numpy only -------------------------------------------------------------
def test_anomaly_metric_measures_the_score_against_the_input() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    teacher = x + rng.normal(scale=0.3, size=x.shape)
    student = teacher + rng.normal(scale=0.03, size=x.shape)
    losses = AnomalyScore().losses(teacher, student, x)
    ref, got = anomaly_scores(teacher, x), anomaly_scores(student, x)
    assert losses.shape == (200,) and np.allclose(losses, np.abs(got - ref) / ref.mean())
    assert AnomalyScore().losses(teacher, teacher, x).max() == 0.0
    m = Meter(teacher, metric="anomaly", inputs=x)(student)
    assert m.loss == pytest.approx(losses.mean()) and m.stderr > 0 and math.isnan(m.agreement)
    labels = (np.arange(200) % 2).astype(np.int64)
    extras = Meter(teacher, metric="anomaly", inputs=x).extras(student, labels)
    assert set(extras) == {"auc_float", "auc_quantized"}
    with pytest.raises(ValueError, match="autoencoder"):
        Meter(teacher[:, :4], metric="anomaly", inputs=x)


def test_roc_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=300), 1)  # ties
    y = rng.integers(0, 2, 300)
    pos, neg = s[y == 1], s[y == 0]
    pairs = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(pairs)
    assert math.isnan(roc_auc(s, np.zeros(300)))


def test_function_and_class_metrics_and_their_errors(tmp_path, monkeypatch) -> None:
    t = np.random.default_rng(0).normal(size=(50, 3))
    m = Meter(t, metric=abs_error, inputs=t)(t * 1.01)
    assert m.loss == pytest.approx(0.01) and m.kl == pytest.approx(0.01)
    assert as_metric(abs_error).name == "abs_error" and isinstance(as_metric(abs_error), FunctionMetric)
    with pytest.raises(ValueError, match=r"'wrong_shape' returned shape \(50, 2\).*\(50,\)"):
        Meter(t, metric=wrong_shape, inputs=t)
    with pytest.raises(ValueError, match="'nan_loss' returned NaN or inf for 1 of 50 samples.*sample 3"):
        Meter(t, metric=nan_loss, inputs=t)
    (tmp_path / "user_metrics.py").write_text(
        "import numpy as np\n"
        "def sq(teacher, student, inputs):\n    return ((student - teacher) ** 2).sum(axis=1)\n")
    monkeypatch.chdir(tmp_path)
    assert load_metric("user_metrics:sq").name == "user_metrics:sq"
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        load_metric("no_such_module:f")
    with pytest.raises(ValueError, match="has no 'nope'"):
        load_metric("user_metrics:nope")
    with pytest.raises(ValueError, match="module:function"):
        as_metric("mse")
    with pytest.raises(ValueError, match="not callable|TaskMetric"):
        fxpq_keras.SearchOptions(metric=3).validate()


def test_labeled_loss_is_float_correct_minus_quantized_correct() -> None:
    teacher = np.eye(3)[[0, 1, 2, 0]]  # float predictions
    labels = np.array([0, 1, 1, 0])  # float right on 0, 1, 3
    student = np.eye(3)[[0, 2, 1, 1]]  # quantized right on 0, 2
    m = Meter(teacher, metric="top1", probabilities=True, labels=labels)(student)
    assert m.loss == pytest.approx((3 - 2) / 4)  # float accuracy 75 % - quantized 50 %
    assert m.agreement == pytest.approx(0.25)  # agreement with the teacher stays what it was


def test_generic_mean_estimate() -> None:
    est = predict_mean_loss(np.array([0.0, 0.02, 0.01, 0.03]))
    assert est.loss == pytest.approx(0.015) and est.stderr == pytest.approx(np.std([0, .02, .01, .03], ddof=1) / 2)


def test_interval_shift_of_fitted_custom_and_own_metrics() -> None:
    """A metric nobody fitted gets the most cautious fitted shift; a user's measured one is used as given."""
    assert interval_shift("top1") == SHIFT["top1"] and interval_shift("snr") == SHIFT["snr"]
    assert interval_shift("anomaly", as_metric("anomaly")) == SHIFT["anomaly"]
    assert interval_shift("abs_error", as_metric(abs_error)) == DEFAULT_SHIFT == max(SHIFT.values())

    class Measured(TaskMetric):
        name = "measured"
        interval_shift = 0.05

        def losses(self, teacher, student, inputs):
            return abs_error(teacher, student, inputs)

    assert interval_shift("measured", Measured()) == 0.05
    Measured.interval_shift = -1.0
    with pytest.raises(ValueError, match="interval_shift must be a finite number >= 0"):
        interval_shift("measured", Measured())


def test_resolution_rule_one_flip_with_headroom() -> None:
    """The rule of docs/algorithm.md: the smallest n where one flip, plus z standard errors, fits."""
    need = as_metric("top1").samples_needed(0.01, 1.0)
    flips = np.zeros(need)
    flips[0] = 1
    assert predict_drop(flips).upper(1.0) <= 0.01 < predict_drop(flips[:-1]).upper(1.0)
    assert 150 <= need <= 400  # about (1 + z) / limit: one flip is 1/n, its standard error about 1/n too
    assert as_metric("top1").samples_needed(0.001, 1.0) > 1000  # 0.1 % on 512 samples cannot be resolved
    budget = Budget("top1", 0.001)
    err = resolution_error(budget, 512, 512.0)
    assert isinstance(err, UnresolvedBudgetError) and err.samples_needed > 1000 and "needs at least" in str(err)
    assert resolution_error(Budget("top1", 0.01), 512, 512.0) is None
    assert resolution_error(Budget("snr", 0.0001), 8, 8.0) is None  # a continuous loss has no count rule
    # weights that shrink the effective size raise the count
    assert resolution_error(budget, 2000, 1000.0).samples_needed == 2 * err.samples_needed


# -- through the search ---------------------------------------------------------------------------
def test_anomaly_metric_search_reports_auc(digits: dict) -> None:
    x = np.concatenate([digits["normal"][1000:1200], digits["x"][digits["y"] == 0][:40]])
    labels = np.r_[np.zeros(200), np.ones(40)].astype(np.int64)
    res = FxPQNet(0.02, metric="anomaly", **FAST).quantize(digits["ae"], x, labels=labels)
    assert res.metric == "anomaly" and "anomaly score" in res.budget.describe()
    assert res.budget_met and res.predicted_loss <= 0.02
    assert {"auc_float", "auc_quantized", "samples"} <= set(res.extras) and res.extras["auc_float"] > 0.7
    text = res.summary()
    assert "mean anomaly-score change" in text and "ROC AUC" in text
    # the budget bounds what it says on the searched samples
    q = fxpq_keras.search.evaluator.predict(res.model, x)
    change = np.abs(anomaly_scores(q, x) - anomaly_scores(digits["ae"].predict(x, verbose=0), x))
    assert change.mean() / anomaly_scores(digits["ae"].predict(x, verbose=0), x).mean() < 0.05


def test_custom_metric_via_api(digits: dict) -> None:
    class Scaled(TaskMetric):
        name = "scaled_abs"

        def losses(self, teacher, student, inputs):
            return abs_error(teacher, student, inputs)

    widths = {}
    for metric in (abs_error, Scaled()):
        res = FxPQNet(0.05, metric=metric, samples=300, **FAST).quantize(digits["model"], digits["x"][:300])
        assert res.budget_met and res.predicted_loss <= 0.05 and res.metric in ("abs_error", "scaled_abs")
        assert res.policy.memory().compression_total > 3
        widths[res.metric] = res.predicted_interval
    # an unfitted metric's interval allows for the most cautious fitted shift: at least that share of the loss
    lo, hi = widths["abs_error"]
    assert hi - lo >= 2 * 1.645 * DEFAULT_SHIFT * (lo + hi) / 2 * 0.99


def test_labeled_budget_via_api(digits: dict) -> None:
    x, y = digits["x"][:400], digits["y"][:400]
    res = FxPQNet(0.02, samples=400, **FAST).quantize(digits["model"], x, labels=y)
    assert res.labeled_budget and "accuracy drop on the labeled" in res.budget.describe()
    lb = res.labeled
    assert res.budget_met and lb["samples"] == 400
    assert res.predicted_loss == pytest.approx(lb["float_accuracy"] - lb["quantized_accuracy"], abs=0.01)
    assert "predicted accuracy drop" in res.budget_line()


def test_unresolved_budget_raises_with_the_count(digits: dict) -> None:
    with pytest.raises(UnresolvedBudgetError) as info:
        FxPQNet(0.01, samples=32, **FAST).quantize(digits["model"], digits["x"][:500])
    assert info.value.samples == 32 and 150 <= info.value.samples_needed <= 400
    res = FxPQNet(0.01, samples=32, allow_unresolved=True, **FAST).quantize(digits["model"], digits["x"][:500])
    assert res.samples_needed == info.value.samples_needed and "UNRESOLVED" in res.budget_line()


def test_callback_checks_resolution_before_training(digits: dict) -> None:
    cb = fxpq_keras.FxPQNetCallback(digits["x"][:40], max_accuracy_drop=0.01, **FAST)
    model = keras.models.clone_model(digits["model"])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(UnresolvedBudgetError):
        model.fit(digits["x"][:64], digits["y"][:64], epochs=1, verbose=0, callbacks=[cb])


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(digits: dict, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("metrics")
    paths = {"model": str(root / "mlp.keras"), "ae": str(root / "ae.keras"), "data": str(root / "calib.npz"),
             "labels": str(root / "labels.npy"), "normal": str(root / "normal.npz"), "root": root}
    digits["model"].save(paths["model"])
    digits["ae"].save(paths["ae"])
    np.savez(paths["data"], x=digits["x"][:600])
    np.save(paths["labels"], digits["y"][:600])
    np.savez(paths["normal"], x=digits["normal"][1000:1300])
    (root / "cli_metrics.py").write_text(
        "import numpy as np\n"
        "def rel_abs(teacher, student, inputs):\n"
        "    t = teacher.reshape(len(teacher), -1)\n"
        "    return np.abs(student.reshape(len(t), -1) - t).mean(axis=1) / np.abs(t).mean()\n"
        "def bad_shape(teacher, student, inputs):\n    return np.zeros((3,))\n")
    return paths


def test_cli_custom_metric_and_bad_metric(files: dict, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(files["root"])
    rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(tmp_path / "a"), "--samples", "300",
               "--metric", "cli_metrics:rel_abs", "--max-drop", "0.05", "--max-bits", "8", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "cli_metrics:rel_abs" in (tmp_path / "a" / "report.md").read_text()
    for spec, words in (("cli_metrics:nope", "has no 'nope'"), ("nowhere_mod:f", "cannot import module"),
                        ("cli_metrics:bad_shape", "returned shape (3,)")):
        rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(tmp_path / "b"), "--samples", "300",
                   "--metric", spec, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, (spec, err)


def test_cli_labels_and_anomaly(files: dict, tmp_path, capsys) -> None:
    rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(tmp_path / "l"), "--samples", "600",
               "--labels", files["labels"], "--max-drop", "0.02", "--max-bits", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "accuracy drop on the labeled calibration data <= 2.00%" in out and "-> met" in out
    rc = main(["quantize", files["ae"], "-d", files["normal"], "-o", str(tmp_path / "ae"), "--metric", "anomaly",
               "--max-drop", "0.02", "--max-bits", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "metric anomaly" in out and "-> met" in out
    rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(tmp_path / "x"),
               "--labels", files["labels"] + ".missing"])
    assert rc == 2


def test_cli_unresolved_budget_exits_3_before_writing(files: dict, tmp_path, capsys) -> None:
    for extra in (["--max-drop", "0.001"], ["--samples", "32"]):
        out = tmp_path / "u"
        rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(out), "--max-bits", "8", *extra])
        printed = capsys.readouterr()
        assert rc == 3 and "cannot resolve the budget" in printed.err and "needs at least" in printed.err
        assert "-> met" not in printed.out and not (out / "model.tflite").exists()


def test_start_policy_breaking_the_budget_is_never_met(files: dict, tmp_path, capsys) -> None:
    """Issue 21: 'the 16-bit start policy already breaks the budget' next to 'budget ... -> met'."""
    rc = main(["quantize", files["model"], "-d", files["data"], "-o", str(tmp_path / "s"), "--max-drop", "0.001",
               "--allow-unresolved", "--max-bits", "8", "--samples", "600"])
    printed = capsys.readouterr()
    assert rc == 3 and "already breaks the budget" in printed.err
    assert "-> met" not in printed.out and "NOT MET" in printed.out and "UNRESOLVED" in printed.out
