"""The benchmark zoo (bench/models.py, bench/data.py): every model builds and fxpq takes it, the data
makers are deterministic and keep held-out data apart, the metrics mean what they say. No training."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import data as D  # noqa: E402
from bench import models as M  # noqa: E402

SHAPES = {  # MLPerf Tiny reference sizes (inputs, outputs, parameters incl. BN statistics)
    "lenet5": ((28, 28, 1), 10, 61_706),
    "residual_ds_net": ((28, 28, 1), 10, 9_994),
    "ds_cnn_seq": ((28, 28, 1), 10, 12_362),
    "resnet8": ((32, 32, 3), 10, 78_666),
    "ds_cnn_kws": ((49, 10, 1), 12, 24_332),
    "mobilenet_v1_025": ((96, 96, 3), 10, 221_114),
    "fc_autoencoder": ((640,), 640, 269_992),
    "mobilenet_v3_tiny": ((32, 32, 3), 10, 26_956),  # not MLPerf Tiny: the zoo's hard-swish / SE model
    "mobilenet_v2_tiny": ((32, 32, 3), 10, 22_714),  # not MLPerf Tiny: ReLU6 inverted residuals, fitted on by nothing
}


def test_zoo_has_the_promised_models():
    assert set(M.MODELS) == set(SHAPES)
    assert M.ZOO["fc_autoencoder"].metric == "auc"


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.filterwarnings("ignore::fxpq_keras.calibration.CalibrationRangeWarning")  # untrained: tiny outputs
def test_zoo_model_builds_and_fxpq_takes_it(name):
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.policy import Policy

    model = M.ZOO[name].build()
    shape, outputs, params = SHAPES[name]
    assert tuple(model.input_shape[1:]) == shape
    assert model.output_shape[-1] == outputs
    assert model.count_params() == params
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    policy = Policy.uniform(Calibration(model, x), 8, None)
    assert policy.memory().compression_weights > 3.5


def test_image_crops_are_deterministic_and_labelled():
    a, b = D.image_crops(32, 3, 2), D.image_crops(32, 3, 2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["x_train"].shape == (30, 32, 32, 3) and a["x_test"].shape == (20, 32, 32, 3)
    assert sorted(np.bincount(a["y_train"])) == [3] * 10
    assert 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    assert not np.array_equal(D.image_crops(32, 3, 2, seed=7)["x_train"], a["x_train"])


def test_crops_stay_inside_their_columns():
    """Train crops from the left part of a picture, test crops from the right: no shared pixel."""
    cols = np.broadcast_to(np.arange(300, dtype=np.float32)[None, :, None], (200, 300, 3))
    rng = np.random.default_rng(0)
    left = D._crops(cols, 20, 32, 24, 72, 0, 210, rng)
    right = D._crops(cols, 20, 32, 24, 72, 210, 300, rng)
    assert left.max() <= 209 and right.min() >= 210


def test_keyword_speakers_are_held_out():
    voices, test = D.speakers()
    assert len(voices) == len(set(voices)) == len(D.ACCENTS) * len(D.VARIANTS)
    assert len(test) == 18 and test < set(voices)


def test_mfcc_and_log_mel_shapes():
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert D.mfcc(audio).shape == (49, 10)
    fb = D.mel_filterbank(40, 1024, 16000, 20.0, 4000.0)
    assert fb.shape == (513, 40) and (fb.sum(axis=0) > 0).all()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (scripts/setup.sh installs it)")
def test_keywords_are_deterministic():
    a, b = D.keywords(limit=2), D.keywords(limit=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["x_train"].shape[1:] == (49, 10, 1)
    assert set(a["y_train"]) >= set(range(10)) | {11}


def test_machine_sounds_are_deterministic_and_anomalies_differ():
    a, b = D.machine_sounds(train=200, test=100), D.machine_sounds(train=200, test=100)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["x_train"].shape == (200, 640) and (a["y_train"] == 0).all() and a["y_test"].sum() == 50
    # a learnable task: anomalous windows lie farther from their nearest normal training window
    nearest = np.sqrt(((a["x_test"][:, None, :] - a["x_train"][None]) ** 2).sum(-1)).min(axis=1)
    assert M.auc(nearest, a["y_test"]) > 0.65


def test_auc_and_score():
    y = np.array([0, 0, 1, 1])
    assert M.auc(np.array([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert M.auc(np.array([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert M.auc(np.array([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    x = np.zeros((4, 640), np.float32)
    recon = x.copy()
    recon[2:] += 1.0  # the anomalies reconstruct badly
    assert M.score("fc_autoencoder", recon, {"x_test": x, "y_test": y}) == 1.0
    assert M.score("lenet5", np.eye(10)[[3, 1]], {"y_test": np.array([3, 2])}) == 0.5


def test_model_cache_key_follows_the_data():
    d1 = {"x_train": np.zeros((2, 28, 28, 1), np.float32), "y_train": np.zeros(2, np.int64)}
    d2 = {"x_train": np.ones((2, 28, 28, 1), np.float32), "y_train": np.zeros(2, np.int64)}
    assert M.model_path("lenet5", d1) != M.model_path("lenet5", d2)
    assert M.model_path("lenet5", d1) != M.model_path("residual_ds_net", d1)
    assert M.model_path("lenet5", d1) == M.model_path("lenet5", dict(d1))


def test_model_cache_key_is_the_same_in_another_process():
    """The key holds no object address or other per-process state: a cached model is found again."""
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from bench import models as M; "
            "print(M.model_path('ds_cnn_kws', {'x_train': np.zeros((2, 49, 10, 1), np.float32), "
            "'y_train': np.zeros(2, np.int64)}).name)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[1])],
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    d = {"x_train": np.zeros((2, 49, 10, 1), np.float32), "y_train": np.zeros(2, np.int64)}
    assert out == M.model_path("ds_cnn_kws", d).name


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown benchmark model 'nope'"):
        M.data_for("nope")
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        D.cached("nope")


def test_quality_tables_put_ratios_and_budget_verdicts_side_by_side():
    """bench/quality.py's table: ratios to TFLite int8 of the same model, OVER when held-out breaks the budget."""
    from bench import quality as Q

    x = {"label": "FxP-QNet", "score": 0.94, "drop": 0.01, "loss": 0.028, "held": False, "seconds": 77.6,
         "evals": 671, "paper_x": 6.04, "predicted": 0.0038, "interval": (0.0, 0.0085), "budget_met": True,
         "metric_searched": "top1", "file_bytes": 14_816, "param_bytes": 9_000, "ram_bytes": 3_000}
    f = {"name": "ds_cnn_seq", "params": 12_362, "metric": "top1", "float": 0.951,
         "int8": {"score": 0.952, "file_bytes": 19_256, "param_bytes": 12_000, "ram_bytes": 6_000, "paper_x": 3.97,
                  "loss": 0.023, "held": False},
         "uniform": {"bits": 8, "loss": 0.006, "held": True, "paper_x": 3.99}, "fxpq": x, "ablations": [x]}
    ae = {"name": "fc_autoencoder", "params": 269_992, "metric": "auc", "float": 0.87,
          "int8": {"score": 0.86, "file_bytes": 300_000, "param_bytes": None, "ram_bytes": None, "paper_x": 3.9,
                   "loss": 3e-5, "held": True},
          "uniform": None, "fxpq": x | {"metric_searched": "snr", "loss": 0.001, "held": True, "predicted": 0.005,
                                        "interval": (0.004, 0.006), "file_bytes": None,
                                        "export_error": "ExportError: nope"}, "ablations": []}
    text = Q.zoo_tables([f, ae], 0.01)
    row = next(line for line in text.splitlines() if line.startswith("| ds_cnn_seq") and "14,816" in line)
    assert "14,816 (0.77x)" in row and "9,000 (0.75x)" in row and "3,000 (0.50x)" in row
    assert "2.80% OVER" in text and "8, 0.60% ok" in text
    assert "30.0 dB ok" in text and "23.0 dB (22.2..24.0 dB)" in text and "ExportError: nope" in text
    assert "| fc_autoencoder | 269,992 | AUC 0.870 | AUC 0.860 | 45.2 dB ok | none |" in text
    # TFLite int8's own held-out loss sits beside, judged by the same budget
    assert "| ds_cnn_seq | 12,362 | 95.10% | 95.20% | 2.30% OVER | 8, 0.60% ok |" in text
    failed = {"label": "  - no layer-wise adaptation (M2)", "error": "ValueError: x"}
    abl = Q.ablation_table(f | {"ablations": [x, failed]})
    assert "| FxP-QNet | 94.00% | 1.00% | 2.80% OVER |" in abl
    assert "| no layer-wise adaptation (M2) | ValueError: x" in abl


def test_mcu_and_quality_benchmarks_search_one_way():
    """Before: bench/mcu.py searched float-input files with its own options and cache key, so its 1 %
    arenas were not bench/quality.py's. Now both go through bench/search_setting.py: one quantizer
    (integer input, seed 0), one policy cache keyed by options and calibration samples."""
    import inspect

    from bench import mcu, quality
    from bench import search_setting as S

    q = S.quantizer(0.01, 8)
    assert q.options.float_input is False and q.options.seed == 0 and q.options.samples == 8
    x = np.zeros((8, 4), np.float32)
    assert S.policy_path("m", x) == S.policy_path("m", x.copy())
    assert S.policy_path("m", x) != S.policy_path("m", x + 1)
    assert S.policy_path("m", x) != S.policy_path("m", x, options={"align_ranges": False})
    for module in (mcu, quality):
        src = inspect.getsource(module)
        assert "FxPQNet(" not in src and "setting." in src and "model_options(" in src, module.__name__
    # the autoencoder is searched with its task's metric (issue 21), and a run's --option still wins
    assert S.model_options("fc_autoencoder") == {"metric": "anomaly"}
    assert S.model_options("fc_autoencoder", {"metric": "snr"}) == {"metric": "snr"}
    assert S.model_options("lenet5", {"align_ranges": False}) == {"align_ranges": False}

    def error(message: str) -> None:
        raise ValueError(message)

    assert S.parse_options(["align_ranges=False"], error) == {"align_ranges": False}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        S.parse_options(["align_ranges"], error)
    with pytest.raises(ValueError, match="--option"):
        S.parse_options(["no_such_option=1"], error)
