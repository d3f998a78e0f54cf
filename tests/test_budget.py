"""The budget decision itself (fxpq_keras/search/budget.py): milliseconds, no TensorFlow model.

These pin the sign of the head-room, the metric choice, the unseen-data weighting and what the
interval says, so that a change to any of them fails here and not only in a search's result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fxpq_keras.search.budget import (
    Budget,
    Estimate,
    Meter,
    choose_metric,
    effective_samples,
    latest_within,
    margin_weights,
    predict_drop,
    predict_relative_mse,
    snr_db,
)
from fxpq_keras.search.interval import (
    SHIFT,
    Z90,
    cluster_stderr,
    copy_clusters,
    predictive,
    selection,
    wilson_upper,
    with_selection,
)


def test_headroom_is_subtracted_from_the_limit() -> None:
    budget = Budget("top1", 0.01, z=1.0)
    assert budget.holds(Estimate(0.006, 0.004, 500))  # 0.010: on the limit
    assert not budget.holds(Estimate(0.007, 0.004, 500))  # 0.011: a flipped sign would accept this
    assert not budget.holds(Estimate(0.0095, 0.002, 500))  # below the limit, but not by z standard errors
    assert Budget("top1", 0.01, z=0.0).holds(Estimate(0.0095, 0.002, 500))
    assert Budget("top1", 0.01, z=2.0).holds(Estimate(0.002, 0.004, 500))
    assert not Budget("top1", 0.01, z=2.0).holds(Estimate(0.0021, 0.004, 500))


def test_drop_and_interval_from_flips() -> None:
    flips = np.zeros(1000)
    flips[:5] = 1
    est = predict_drop(flips)
    assert est.loss == pytest.approx(0.005)
    assert est.stderr == pytest.approx(math.sqrt(0.005 * 0.995 / 1000))
    lo, hi = est.interval()
    assert lo < 0.005 < hi and hi == pytest.approx(0.005 + 1.645 * est.stderr)
    none = predict_drop(np.zeros(500))  # no flip seen: still half a flip of uncertainty
    assert none.loss == 0.0 and none.stderr == pytest.approx(math.sqrt(0.001 * 0.999 / 500))
    small = predict_drop(np.zeros(256))
    assert small.stderr > none.stderr  # fewer samples, wider


def test_low_margin_samples_weigh_more() -> None:
    margins = np.linspace(0.1, 10.0, 1000)
    w = margin_weights(margins, 0.05, 0.10)
    assert w.mean() == pytest.approx(1.0)
    assert w[:50].sum() / w.sum() == pytest.approx(0.10)  # the lowest 5% carry 10%
    flips = np.zeros(1000)
    flips[:5] = 1  # the flips sit among the lowest margins
    assert predict_drop(flips, w).loss == pytest.approx(0.010)  # twice the plain rate
    assert predict_drop(flips, margin_weights(margins, 0.05, 0.05)).loss == pytest.approx(0.005)  # switched off
    assert effective_samples(w) < 1000


def test_labels_mode_loss_is_base_minus_accuracy() -> None:
    est = predict_drop(-np.array([1, 1, 1, 0.0]), base=1.0)
    assert est.loss == pytest.approx(0.25)


def test_meter_top1_counts_flips_against_the_teacher() -> None:
    teacher = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    student = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.3, 0.7]], np.float32)  # sample 2 flips
    m = Meter(teacher, metric="top1", probabilities=True)(student)
    assert m.agreement == 0.75 and m.loss == pytest.approx(0.25) and m.kl > 0
    same = Meter(teacher, metric="top1", probabilities=True)(teacher)
    assert same.loss == 0.0 and same.kl == pytest.approx(0.0, abs=1e-6)
    logits = Meter(np.log(teacher), metric="top1", probabilities=False)
    with pytest.raises(ValueError, match="outputs for a set of 4"):
        logits(student[:3])


def test_snr_metric() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(400, 16))
    q = t + rng.normal(scale=0.1, size=t.shape)  # noise power 1% of the signal: 20 dB
    m = Meter(t, metric="snr")(q)
    assert m.loss == pytest.approx(0.01, rel=0.1) and snr_db(m.loss) == pytest.approx(20.0, abs=0.5)
    assert math.isnan(m.agreement)
    est = predict_relative_mse(np.full(100, 1.0), np.full(100, 100.0))
    assert est.loss == pytest.approx(0.01) and est.stderr == pytest.approx(0.0)
    budget = Budget("snr", 0.01)
    assert "20.0 dB" in budget.describe() and "snr" in budget.describe()
    assert budget.holds(Estimate(0.009, 0.001, 100)) and not budget.holds(Estimate(0.0095, 0.001, 100))
    assert snr_db(0.0) == math.inf


def test_metric_choice() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=8)
    assert choose_metric(probs) == "top1"
    assert choose_metric(rng.normal(size=(8, 10)), input_shape=(28, 28, 1)) == "top1"  # logits
    assert choose_metric(rng.normal(size=(8, 640)), input_shape=(640,)) == "snr"  # an autoencoder
    assert choose_metric(rng.dirichlet(np.ones(640), size=8), input_shape=(640,)) == "top1"  # softmax wins
    assert choose_metric(np.zeros((8, 1))) == "snr"
    assert choose_metric(np.zeros((8, 4, 4, 3))) == "snr"
    assert choose_metric(probs, "snr") == "snr"
    with pytest.raises(ValueError, match="snr"):
        choose_metric(np.zeros((8, 1)), "top1")
    with pytest.raises(ValueError, match="metric"):
        choose_metric(probs, "mse")


def test_budget_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="metric"):
        Budget("accuracy", 0.01)
    with pytest.raises(ValueError, match="limit"):
        Budget("top1", 0.0)
    with pytest.raises(ValueError, match="confidence"):
        Budget("top1", 0.01, z=-1)


def test_walk_back_finds_the_latest_policy_inside_the_budget() -> None:
    """The selection-bias guard walks back along the accepted policies to the latest one whose
    validation estimate holds: the last one when it holds (one question), else a bisection that
    never returns an entry that fails, and entry 0 when nothing holds."""
    asked: list[int] = []

    def upto(k: int):
        def holds(i: int) -> bool:
            asked.append(i)
            return i <= k
        return holds

    assert latest_within(40, upto(39)) == 39 and asked == [39]
    for k in range(40):
        asked.clear()
        assert latest_within(40, upto(k)) == k, k
        assert len(asked) <= 1 + math.ceil(math.log2(40)), asked
    assert latest_within(40, upto(-1)) == 0  # none holds: the first entry, reported as missed
    assert latest_within(1, upto(-1)) == 0
    with pytest.raises(ValueError):
        latest_within(0, upto(0))


# -- honest intervals (fxpq_keras/search/interval.py) -------------------------------------------------

def test_cluster_stderr_counts_shared_inputs_once() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(size=400)
    plain = cluster_stderr(u - u.mean(), None)
    assert plain == pytest.approx(math.sqrt(400 / 399 * np.sum((u - u.mean()) ** 2)) / 400)
    assert cluster_stderr(u - u.mean(), np.arange(400)) == pytest.approx(plain)  # singletons: the plain one
    base = rng.normal(size=100)
    x = np.tile(base, 4)  # four identical copies of 100 inputs: the standard error of 100 samples, not 400
    assert cluster_stderr(x - x.mean(), copy_clusters(4, 100)) == pytest.approx(base.std(ddof=1) / 10)
    assert cluster_stderr(x - x.mean(), None) == pytest.approx(base.std(ddof=1) / 20, rel=0.01)
    assert list(copy_clusters(2, 3)) == [0, 1, 2, 0, 1, 2]
    assert list(copy_clusters(2, 3, np.array(["a", "b", "a"]))) == [0, 1, 0, 0, 1, 0]  # source groups
    with pytest.raises(ValueError, match="cluster ids"):
        cluster_stderr(u, np.arange(3))


def test_wilson_upper_is_above_the_normal_bound_for_few_events() -> None:
    assert wilson_upper(0.0, 500) == pytest.approx(Z90 ** 2 / (500 + Z90 ** 2))  # no event: still ~2.7/n
    assert wilson_upper(0.002, 500) > 0.002 + Z90 * math.sqrt(0.002 * 0.998 / 500)
    assert wilson_upper(0.3, 1e6) == pytest.approx(0.3 + Z90 * math.sqrt(0.21 / 1e6), rel=1e-4)  # large n
    assert wilson_upper(1.0, 10) == 1.0


def test_copies_of_one_input_widen_the_drop_interval() -> None:
    n, copies = 512, 4
    base = np.zeros(n)
    base[:5] = 1  # five fragile inputs flip in every copy: 5 independent events, not 20
    flips = np.tile(base, copies)
    old = predict_drop(flips)
    new = predict_drop(flips, clusters=copy_clusters(copies, n))
    assert new.loss == old.loss == pytest.approx(5 / 512)
    assert new.samples == pytest.approx(n) and old.samples == pytest.approx(n * copies)
    assert new.stderr > 1.9 * old.stderr
    independent = np.zeros(n * copies)
    independent[::103] = 1  # the same rate spread over different inputs: no design effect
    assert predict_drop(independent, clusters=copy_clusters(copies, n)).samples == pytest.approx(n * copies)
    shifted = predict_drop(flips, clusters=copy_clusters(copies, n), shift=0.5)
    assert shifted.loss == new.loss and shifted.stderr > math.hypot(new.stderr, 0.5 * new.loss)


def test_honest_interval_covers_a_shifted_population() -> None:
    """Calibration inputs of which a few are fragile (their copies flip together), and held-out data whose
    loss differs from the calibration population's by a relative shift of sd `tau`: the old interval
    (binomial over copies taken as independent, no shift) under-covers; the new one covers at about its
    stated rate (90 % two-sided, 95 % under its upper end)."""
    rng = np.random.default_rng(1)
    n, copies, trials, tau = 256, 4, 300, 0.3
    old_in = new_in = new_under = 0
    for _ in range(trials):
        p = np.where(rng.random(n) < 0.05, rng.uniform(0.2, 1.0, n), 0.0)  # per-input flip probability
        flips = (rng.random((copies, n)) < p).ravel()
        held = 0.03 * (1.0 + tau * rng.standard_normal())  # E[p] = 0.03 on calibration-like data, then shifted
        lo, hi = predict_drop(flips).interval()
        old_in += lo <= held <= hi
        lo, hi = predict_drop(flips, clusters=copy_clusters(copies, n), shift=tau).interval()
        new_in += lo <= held <= hi
        new_under += held <= hi
    assert old_in / trials < 0.6
    assert 0.85 <= new_in / trials <= 0.99 and new_under / trials >= 0.92


def test_selection_term_removes_the_winners_curse() -> None:
    """The search keeps, of `k` equally good policies, the one whose check copies flip least: its check
    loss is biased low, and the validation copies of the same inputs inherit part of that. The term
    estimated from the copies alone (`selection`) brings the mean error near zero; with nothing selected
    (k = 1) it adds little."""
    rng = np.random.default_rng(2)
    n, copies, truth = 512, 4, 0.05 * 0.6

    def errors(k: int) -> tuple[float, float]:
        raw, fixed = [], []
        for _ in range(150):
            best = None
            for _ in range(k):
                p = np.where(rng.random(n) < 0.05, rng.uniform(0.3, 0.9, n), 0.0)
                check = (rng.random(n) < p).astype(np.float64)
                if best is None or check.sum() < best[1].sum():
                    best = (p, check)
            p, check = best
            val = (rng.random((copies, n)) < p).astype(np.float64)
            est = predict_drop(val.ravel(), clusters=copy_clusters(copies, n))
            raw.append(est.loss - truth)
            fixed.append(with_selection(est, val, check).loss - truth)
            bias, se = selection(val, check)
            assert bias >= 0 and se >= 0
        return float(np.mean(raw)), float(np.mean(fixed))

    raw, fixed = errors(20)
    assert raw < -0.005 and abs(fixed) < 0.4 * abs(raw)
    raw, fixed = errors(1)
    assert abs(raw) < 0.002 and 0 <= fixed - raw < 0.005
    with pytest.raises(ValueError, match="copies"):
        selection(np.zeros((4, 10)), np.zeros(9))


def test_snr_interval_clusters_and_shift() -> None:
    rng = np.random.default_rng(3)
    signal = rng.uniform(50, 150, 200)
    noise = signal * rng.uniform(0.005, 0.015, 200)
    plain = predict_relative_mse(np.tile(noise, 4), np.tile(signal, 4))
    clustered = predict_relative_mse(np.tile(noise, 4), np.tile(signal, 4), clusters=copy_clusters(4, 200))
    assert clustered.loss == pytest.approx(plain.loss)
    assert clustered.stderr == pytest.approx(2 * plain.stderr, rel=0.01)  # 200 inputs, not 800
    shifted = predict_relative_mse(noise, signal, shift=0.1)
    assert shifted.stderr > 0.1 * shifted.loss
    with pytest.raises(ValueError, match="signal"):
        predict_relative_mse(noise, signal[:10])


def test_predictive_interval_adds_the_held_out_sets_noise() -> None:
    est = Estimate(0.01, 0.002, 2048)
    wide = predictive(est, 400)
    assert wide.loss == est.loss and wide.stderr == pytest.approx(math.hypot(0.002, math.sqrt(0.01 * 0.99 / 400)))
    assert predictive(est, 400, per_sample_var=0.0).stderr == pytest.approx(0.002)
    with pytest.raises(ValueError, match="held-out"):
        predictive(est, 0)


def test_meter_passes_clusters_and_shift() -> None:
    teacher = np.tile(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32), (4, 1))
    student = teacher.copy()
    student[2::4] = [0.4, 0.6]  # input 2 flips in all four copies
    plain = Meter(teacher, metric="top1", probabilities=True)(student)
    honest = Meter(teacher, metric="top1", probabilities=True, clusters=copy_clusters(4, 4), shift=0.2)(student)
    assert honest.loss == plain.loss == pytest.approx(0.25) and honest.stderr > plain.stderr
    assert SHIFT["top1"] >= 0 and SHIFT["snr"] >= 0
