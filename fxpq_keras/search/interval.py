"""Honest intervals: from per-sample losses measured on calibration data to an `Estimate` for unseen
data whose interval covers held-out loss at its stated rate (docs/algorithm.md, "Budget",
"Interval").

Plain numpy, no TensorFlow: the search, the CLI's check of a written file and bench/budget_estimators.py
all call these on per-sample arrays, and tests/test_budget.py checks their coverage on synthetic
populations in milliseconds.

Three sources of error, each with its own term:

1. **Sampling, with clusters.** The validation copies are every calibration input blended with
   `copies` partners: the copies of one input share it, so they are not independent samples. The
   standard error is cluster-robust over the calibration inputs (or over coarser source groups:
   speakers, machines, pictures, when the data has them), the analytic form of a bootstrap that
   resamples whole clusters. It never falls below the binomial rule (`budget.predict_drop`).
2. **Selection (the winner's curse).** The greedy accepts steps on the check set, so its loss there
   is biased low; the validation copies share each input with the check copy, so they inherit the
   part `beta` of that bias, beta = the intra-input correlation of the copies (`selection`).
3. **Shift** from calibration to held-out data (the training split against unseen speakers,
   machines, picture regions): a relative error of scale `SHIFT[metric]` around the prediction,
   fitted on the zoo leave-one-model-out (bench/budget_estimators.py --intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A predicted budget loss for unseen data with its standard error.

    `loss` is a fraction: the top-1 drop (``top1``) or noise/signal power (``snr``). `samples` is the
    (effective) number of samples behind it.
    """

    loss: float
    stderr: float
    samples: float

    def interval(self, z: float = 1.645) -> tuple[float, float]:
        """Two-sided interval (default z: 90 %), clipped at 0."""
        return max(self.loss - z * self.stderr, 0.0), self.loss + z * self.stderr

    def upper(self, z: float) -> float:
        """One-sided upper bound `loss + z * stderr` (what the budget compares with its limit)."""
        return self.loss + z * self.stderr


# the relative standard deviation of held-out loss around the calibration prediction, by metric: the
# smallest value whose predictive intervals cover held-out loss at their rate on every zoo model of the
# metric (top1: 7 models; snr and anomaly: the autoencoder at three budgets each, the zoo's only model of
# those metrics), printed by bench/budget_estimators.py --intervals (docs/algorithm.md "Interval", with
# leave-one-model-out checks)
SHIFT = {"top1": 0.6, "snr": 0.1, "anomaly": 0.25}
# a metric nobody fitted (a user's): the largest fitted constant, since its shift is unknown
DEFAULT_SHIFT = max(SHIFT.values())
Z90 = 1.645  # the reported interval is 90 % two-sided: its upper end is a 95 % one-sided bound
BETA_MAX = 0.75  # the intra-input correlation used for the selection term is at most this (k <= 3)


def interval_shift(metric: str, task: object | None = None) -> float:
    """The shift constant of a budget metric: the task's own `interval_shift` when it sets one (a user
    who measured their metric's calibration-to-held-out shift), else the fitted built-in's, else
    DEFAULT_SHIFT."""
    own = getattr(task, "interval_shift", None)
    if own is not None:
        if not (isinstance(own, (int, float)) and math.isfinite(own) and own >= 0):
            raise ValueError(f"metric {metric!r}: interval_shift must be a finite number >= 0, got {own!r}")
        return float(own)
    return SHIFT.get(metric, DEFAULT_SHIFT)


def cluster_stderr(influence: np.ndarray, clusters: np.ndarray | None) -> float:
    """Standard error of a mean whose per-sample influence values (`estimate - truth ~ mean(influence)`)
    are independent between clusters only: sqrt(G/(G-1) * sum_g (sum_{i in g} u_i)^2) / n."""
    u = np.asarray(influence, dtype=np.float64)
    n = len(u)
    if n < 2:
        return 0.0
    if clusters is None:
        sums, groups = u, n
    else:
        ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
        if len(inv) != n:
            raise ValueError(f"{len(inv)} cluster ids for {n} samples")
        sums, groups = np.bincount(inv, weights=u, minlength=len(ids)), len(ids)
    if groups < 2:
        return 0.0
    return float(math.sqrt(groups / (groups - 1) * float(np.sum(sums * sums))) / n)


def binomial_estimate(flips: np.ndarray, weights: np.ndarray | None = None, base: float = 0.0) -> Estimate:
    """The plain rule the search's step decisions use (`budget.predict_drop` without clusters): the
    weighted rate, binomial standard error at the estimate floored at half a flip over the effective
    sample size (a set without a flip still has an uncertainty of about 1/(2n))."""
    f = np.asarray(flips, dtype=np.float64)
    if len(f) == 0:
        return Estimate(0.0, 0.0, 0.0)
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_eff = float(w.sum() ** 2 / max(float((w * w).sum()), 1e-300))
    loss = base + float(np.average(f, weights=w))
    q = min(max(loss, 0.5 / max(n_eff, 1.0)), 1.0)
    return Estimate(loss, math.sqrt(q * (1.0 - q) / max(n_eff, 1.0)), n_eff)


def wilson_upper(rate: float, n: float, z: float = Z90) -> float:
    """Upper end of the Wilson score interval of a binomial rate from `n` samples: unlike the estimate
    plus z binomial standard errors it stays above the truth at its rate when the estimate is low by
    chance (few events, right-skewed counts), the case a budget must not accept."""
    n = max(n, 1.0)
    centre = rate + z * z / (2 * n)
    radius = z * math.sqrt(max(rate * (1.0 - rate), 0.0) / n + z * z / (4 * n * n))
    return min((centre + radius) / (1.0 + z * z / n), 1.0)


def drop_estimate(flips: np.ndarray, weights: np.ndarray | None = None, base: float = 0.0, *,
                  clusters: np.ndarray | None = None, shift: float = 0.0) -> Estimate:
    """Predicted top-1 drop on unseen data from per-sample losses `flips` (1 = the student's top-1 differs
    from the target's; with labels, minus the hits and `base` the reference accuracy), with an honest
    standard error:

    1. q = the estimate, at least half a flip over the effective sample size n_w (weights);
    2. n_c = the effective number of independent samples: n_w / design effect, the design effect being
       the cluster-robust variance over `clusters` (samples sharing a calibration input or a source
       group) over the binomial one, clipped to 1 .. n_w / clusters (none given: n_c = n_w);
    3. the sampling half-width is the Wilson upper end u at (q, n_c) minus q, so
       se_s = (u - q) / 1.645 (the 90 % interval's upper end is exactly u);
    4. the shift term: `shift` times u (the shift is relative, and the truth may be as high as u);
    5. stderr = sqrt(se_s^2 + (shift u)^2).
    """
    f = np.asarray(flips, dtype=np.float64)
    n = len(f)
    if n == 0:
        return Estimate(0.0, 0.0, 0.0)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    n_eff = float(w.sum() ** 2 / max(float((w * w).sum()), 1e-300))
    rate = float(np.average(f, weights=w))
    loss = base + rate
    q = min(max(loss, 0.5 / max(n_eff, 1.0)), 1.0)
    n_c = n_eff
    if clusters is not None:
        groups = len(np.unique(np.asarray(clusters)))
        se_c = cluster_stderr(w * (f - rate) / w.mean(), clusters)
        binom = q * (1.0 - q) / n_eff
        deff = se_c * se_c / binom if binom > 0 else 1.0
        n_c = n_eff / min(max(deff, 1.0), n_eff / max(groups, 1))
    upper = wilson_upper(q, n_c)
    return Estimate(loss, math.hypot((upper - q) / Z90, shift * upper), n_c)


def relative_mse_estimate(noise: np.ndarray, signal: np.ndarray, *, clusters: np.ndarray | None = None,
                          shift: float = 0.0) -> Estimate:
    """Relative output MSE (sum of noise power / sum of signal power) with the delta-method standard
    error se_s of a ratio of means (cluster-robust over `clusters`), and `shift` times the sampling upper
    end u = ratio + 1.645 se_s in quadrature (as `drop_estimate`)."""
    noise = np.asarray(noise, dtype=np.float64)
    signal = np.asarray(signal, dtype=np.float64)
    n = len(noise)
    if len(signal) != n:
        raise ValueError(f"{len(signal)} signal powers for {n} noise powers")
    s = float(signal.mean()) if n else 0.0
    if n == 0 or s <= 0:
        return Estimate(0.0 if n == 0 else math.inf, 0.0, float(n))
    ratio = float(noise.mean()) / s
    resid = (noise - ratio * signal) / s
    se = cluster_stderr(resid, clusters)
    return Estimate(ratio, math.hypot(se, shift * (ratio + Z90 * se)), float(n))


def copy_clusters(copies: int, n: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Cluster ids of `copies` stacked copies of `n` calibration inputs (copy-major, as the search
    stacks its validation copies): the input's index, or its source group when `groups` (n,) is given."""
    base = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(base) != n:
        raise ValueError(f"{len(base)} source groups for {n} calibration inputs")
    return np.tile(base, copies)


def selection(validation: np.ndarray, check: np.ndarray) -> tuple[float, float]:
    """The winner's curse left in the validation copies: (bias to add to their loss, its standard error).

    `validation` (copies, n) and `check` (n,) are per-sample losses of one policy on the validation
    copies and on the check set the search accepted its steps on, where input i's check copy and its
    validation copies are exchangeable blends of the same input. Selecting on the check set biases its
    loss low by some B. The copies of input i share its fragility: with intra-input correlation
    beta = s_b^2 / (s_b^2 + s_w^2) (between-input and within-input variance of the copies' losses),
    the expected validation loss given the check copy's moves by beta per unit of it, so the validation
    copies are biased low by beta B, and the observed gap d = L_val - L_check = (1 - beta) B. The bias
    left is therefore k d with k = beta / (1 - beta) (beta capped at BETA_MAX), and its standard error k
    times the paired standard error of d. 0 when the check set saw more loss than the copies.
    """
    v = np.asarray(validation, dtype=np.float64)
    c = np.asarray(check, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(c):
        raise ValueError(f"validation losses must be (copies, {len(c)}), got {v.shape}")
    copies, n = v.shape
    if copies < 2 or n < 2:
        return 0.0, 0.0
    m = v.mean(axis=0)
    within = float(np.mean(v.var(axis=0, ddof=1)))
    between = max(float(m.var(ddof=1)) - within / copies, 0.0)
    total = between + within
    beta = min(between / total, BETA_MAX) if total > 0 else 0.0
    k = beta / (1.0 - beta)
    d = float(m.mean() - c.mean())
    se_d = float(np.std(m - c, ddof=1) / math.sqrt(n))
    return k * max(d, 0.0), k * se_d


def with_selection(est: Estimate, validation: np.ndarray, check: np.ndarray) -> Estimate:
    """`est` (measured on the validation copies) corrected for the winner's curse (`selection`)."""
    bias, se = selection(validation, check)
    return Estimate(est.loss + bias, math.hypot(est.stderr, se), est.samples)


def predictive(est: Estimate, held_out: int, per_sample_var: float | None = None) -> Estimate:
    """The estimate widened for a held-out set of `held_out` samples (what a measured held-out loss
    scatters around): adds its own sampling variance, binomial at the estimate for top-1, or
    `per_sample_var / held_out`."""
    if held_out < 1:
        raise ValueError(f"a held-out set needs at least one sample, got {held_out}")
    if per_sample_var is None:
        q = min(max(est.loss, 0.0), 1.0)
        per_sample_var = q * (1.0 - q)
    return Estimate(est.loss, math.hypot(est.stderr, math.sqrt(per_sample_var / held_out)), est.samples)




def snr_db(relative_mse: float) -> float:
    """Output SNR in dB from noise/signal power (inf for a perfect match)."""
    return math.inf if relative_mse <= 0 else -10.0 * math.log10(relative_mse)


def effective_samples(weights: np.ndarray) -> float:
    """Kish effective sample size of a weighted set."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / max(float((w * w).sum()), 1e-300))


def predict_drop(flips: np.ndarray, weights: np.ndarray | None = None, base: float = 0.0, *,
                 clusters: np.ndarray | None = None, shift: float = 0.0) -> Estimate:
    """Predicted top-1 drop on unseen data: the weighted rate of per-sample losses `flips` (1 for a
    sample the quantized model gets wrong that the reference got right; with labels, `base` minus
    the weighted accuracy) and its standard error.

    The standard error is binomial at the estimate with a floor of half a flip over the effective
    sample size, so a set that saw no flip still reports an uncertainty of about 1/(2 n) (the step
    decisions' rule). With `clusters` (samples sharing an input) or a `shift`, the honest interval
    of the validation copies instead (`interval.drop_estimate`: Wilson, design effect, shift).
    """

    if clusters is None and shift == 0.0:
        return binomial_estimate(flips, weights, base)
    return drop_estimate(flips, weights, base, clusters=clusters, shift=shift)


def predict_relative_mse(noise: np.ndarray, signal: np.ndarray, *, clusters: np.ndarray | None = None,
                         shift: float = 0.0) -> Estimate:
    """Relative output MSE (sum noise / sum signal power over samples) with a delta-method standard
    error of the ratio of means (cluster-robust with `clusters`; `shift`: `interval.relative_mse_estimate`)."""

    return relative_mse_estimate(noise, signal, clusters=clusters, shift=shift)


def predict_mean_loss(losses: np.ndarray, weights: np.ndarray | None = None, *, clusters: np.ndarray | None = None,
                      shift: float = 0.0) -> Estimate:
    """The weighted mean of per-sample losses (any task metric's) with the standard error of a
    weighted mean over the effective sample size (at least the cluster-robust one over `clusters`;
    `shift` times the loss added in quadrature, as `interval` does for the built-in metrics)."""
    f = np.asarray(losses, dtype=np.float64)
    if not len(f):
        return Estimate(0.0, 0.0, 0.0)
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_eff = effective_samples(w)
    loss = float(np.average(f, weights=w))
    var = float(np.average((f - loss) ** 2, weights=w)) * len(f) / max(len(f) - 1, 1)
    se = math.sqrt(var / max(n_eff, 1.0))
    if clusters is not None:

        se = max(se, cluster_stderr(w * (f - loss) / w.mean(), clusters))
    return Estimate(loss, math.hypot(se, shift * abs(loss)), n_eff)


__all__ = ["BETA_MAX", "DEFAULT_SHIFT", "Estimate", "SHIFT", "Z90", "binomial_estimate", "cluster_stderr",
           "copy_clusters", "drop_estimate", "effective_samples", "interval_shift", "predict_drop",
           "predict_mean_loss", "predict_relative_mse", "predictive", "relative_mse_estimate", "selection", "snr_db",
           "wilson_upper", "with_selection"]
