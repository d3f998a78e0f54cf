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
