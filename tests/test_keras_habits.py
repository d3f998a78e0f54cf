"""Keras habits (issue 20 item 4): calibration from datasets and generators, the one-callback search,
quantization-aware fine-tuning that stays bit-exact, save/load after training, clear export errors.

One tiny CNN on scikit-learn's 8x8 digits; searches start at 8 bits on 200 samples to stay short.
"""

from __future__ import annotations

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras, tf, tfmot
from fxpq_keras.calibration import CalibrationDataError
from fxpq_keras.search import PrecisionSearch, SearchOptions

QUICK = {"samples": 200, "max_bits": 8, "seed": 0, "verbose": 0}


@pytest.fixture(scope="module")
def digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = _cnn()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1200], y[:1200], epochs=12, batch_size=64, verbose=0)
    return {"model": model, "x": x[:1200], "y": y[:1200], "x_test": x[1200:], "y_test": y[1200:]}


def _cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])


# -- calibration data in the forms Keras users hold it ----------------------------------------------
class _Batches(keras.utils.Sequence):
    """A tf_keras Sequence of (x, y) batches."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch: int) -> None:
        super().__init__()
        self.x, self.y, self.batch = x, y, batch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[i * self.batch:(i + 1) * self.batch], self.y[i * self.batch:(i + 1) * self.batch]


def _keras3_pydataset(x: np.ndarray, batch: int) -> object:
    import keras as keras3  # Keras 3, next to tf_keras: what most users hold data in

    class Batches(keras3.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()

        @property
        def num_batches(self) -> int:
            return -(-len(x) // batch)

        def __getitem__(self, i: int) -> np.ndarray:
            return x[i * batch:(i + 1) * batch]

    return Batches()


SOURCES = {
    "tf.data of x, unbatched": lambda x, y: tf.data.Dataset.from_tensor_slices(x),
    "tf.data of (x, y), batched": lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
    "generator of batches": lambda x, y: (x[i:i + 50] for i in range(0, len(x), 50)),
    "generator of (x, y) batches": lambda x, y: ((x[i:i + 64], y[i:i + 64]) for i in range(0, len(x), 64)),
    "keras Sequence of (x, y)": lambda x, y: _Batches(x, y, 40),
    "Keras 3 PyDataset": lambda x, y: _keras3_pydataset(x, 33),
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_calibration_from_datasets_and_generators_equals_numpy(digits, source):
    """Before: 'calibration data must be numeric, got dtype object'. Now the search sees the same
    samples, in the same order, as from the numpy array."""
    x, y = digits["x"][:300], digits["y"][:300]
    from_numpy = PrecisionSearch(digits["model"], x, options=SearchOptions(0.02, samples=300, max_bits=6))
    search = PrecisionSearch(digits["model"], SOURCES[source](x, y), options=SearchOptions(0.02, samples=300,
                                                                                           max_bits=6))
    np.testing.assert_array_equal(search.calibration.x, from_numpy.calibration.x)
    assert search.start_policy.to_dict() == from_numpy.start_policy.to_dict()
    calib = fx.Calibration(digits["model"], SOURCES[source](x, y))
    np.testing.assert_array_equal(calib.x, x)


def test_endless_or_empty_calibration_sources_are_clear_errors(digits):
    x = digits["x"][:20]
    with pytest.raises(CalibrationDataError, match="infinite"):
        fx.Calibration(digits["model"], tf.data.Dataset.from_tensor_slices(x).repeat())
    with pytest.raises(CalibrationDataError, match="empty"):
        fx.Calibration(digits["model"], (b for b in []))
    with pytest.raises(CalibrationDataError, match=r"sample shape \(8, 8, 2\)"):
        fx.Calibration(digits["model"], (np.zeros((4, 8, 8, 2), np.float32) for _ in range(2)))


# -- the search as one callback ---------------------------------------------------------------------
def test_one_callback_runs_the_search_when_fit_ends(digits, tmp_path):
    """`model.fit(..., callbacks=[FxPQNetCallback(x_calib)])`: no search internals, the trained model's
    policy at the end, the same as the one-call API on the same weights."""
    keras.utils.set_random_seed(1)
    model = _cnn()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    calib = tf.data.Dataset.from_tensor_slices((digits["x"][:200], digits["y"][:200])).batch(50)
    # no speed cap: with it this model's narrower weights cost decoder time and the result stays at 8 bits
    cb = fx.FxPQNetCallback(calib, max_accuracy_drop=0.03, policy_path=tmp_path / "policy.json", max_slowdown=None,
                            **QUICK)
    model.fit(digits["x"], digits["y"], epochs=8, batch_size=64, verbose=0, callbacks=[cb])
    assert cb.result is not None and cb.result.budget_met
    assert cb.result.memory.compression_total > 32 / 8  # something was lowered below the 8-bit start
    direct = fx.FxPQNet(0.03, max_slowdown=None, **QUICK).quantize(model, digits["x"][:200])
    assert cb.result.policy.to_dict() == direct.policy.to_dict()
    assert fx.Policy.from_json(str(tmp_path / "policy.json")).to_dict() == direct.policy.to_dict()


def test_callback_stops_loudly_when_the_search_cannot_proceed(digits):
    """A budget the start policy already breaks: SearchStoppedError with the search's reason, not a
    silent 16-bit 'result' whose reason hides in search.state.message."""
    model = keras.models.clone_model(digits["model"])
    model.set_weights(digits["model"].get_weights())
    model.compile("sgd", "sparse_categorical_crossentropy")
    cb = fx.FxPQNetCallback(digits["x"][:200], max_accuracy_drop=0.001, samples=200, max_bits=2, min_bits=2,
                            verbose=0, allow_unresolved=True)  # 200 samples cannot resolve 0.1 %: search anyway
    with pytest.raises(fx.SearchStoppedError, match="already breaks the budget"):
        model.fit(digits["x"][:64], digits["y"][:64], epochs=1, verbose=0, callbacks=[cb])
    assert cb.result is not None and not cb.result.budget_met


def test_callback_refuses_an_unsupported_model_before_training():
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3), keras.layers.Conv2DTranspose(2, 3)])
    model.compile("sgd", "mse")
    seen = []
    cb = fx.FxPQNetCallback(np.zeros((8, 6, 6, 1), np.float32), verbose=0)
    with pytest.raises(fx.UnsupportedLayerError, match="Conv2DTranspose"):
        model.fit(np.zeros((8, 6, 6, 1)), np.zeros((8, 6, 6, 2)), epochs=2, verbose=0,
                  callbacks=[cb, keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))])
    assert seen == []  # no epoch was trained for nothing


# -- export errors ----------------------------------------------------------------------------------
def test_export_of_a_float_model_names_the_problem(digits):
    with pytest.raises(fx.NotFakeQuantModelError, match="float Keras model.*quantize_model"):
        fx.export_tflite(digits["model"])


def test_export_of_a_tfmot_annotated_model_names_the_problem(digits):
    """tfmot's own annotate/apply with FxpQuantizeConfig used to fail with KeyError: 'name'."""
    from fxpq_keras.fakequant import FxpQuantizeConfig

    q = tfmot.quantization.keras
    layers = [q.quantize_annotate_layer(layer, FxpQuantizeConfig(["kernel", "bias"], (layer.kernel.shape[-1],)))
              if layer.name in ("conv", "out") else layer for layer in digits["model"].layers]
    annotated = q.quantize_annotate_model(keras.Sequential([keras.Input((8, 8, 1)), *layers]))
    with pytest.raises(fx.NotFakeQuantModelError, match="tfmot"):
        fx.export_tflite(annotated)
    with fx.quantize_scope():
        applied = q.quantize_apply(annotated)
    with pytest.raises(fx.NotFakeQuantModelError, match="tfmot"):
        fx.export_tflite(applied)


# -- quantization-aware fine-tuning, save and load after training -------------------------------------
def _finetuned(digits: dict, bits: int = 5) -> tuple[keras.Model, fx.Policy]:
    """Policy.uniform -> quantize_model -> compile/fit on labels: quantization-aware fine-tuning."""
    policy = fx.Policy.uniform(digits["model"], bits, digits["x"][:300])
    qmodel = fx.quantize_model(digits["model"], policy)
    qmodel.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    qmodel.fit(digits["x"], digits["y"], epochs=2, batch_size=64, verbose=0)
    return qmodel, policy


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_fake_quant_model_saves_and_loads_after_training(digits, tmp_path, suffix):
    """Before: .keras load failed ('expected 15 variables, but received 17'), .h5 save after compile +
    fit failed ('name already exists'). Now the loaded model is the trained one, formats included."""
    qmodel, policy = _finetuned(digits)
    path = str(tmp_path / f"qat{suffix}")
    qmodel.save(path)
    with fx.quantize_scope():
        loaded = keras.models.load_model(path)
    x = digits["x_test"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), qmodel.predict(x, verbose=0))
    assert fx.describe(loaded)[1].to_dict() == policy.to_dict()
    np.testing.assert_array_equal(fx.lower_model(loaded).run(x, raw=True)[0],
                                  fx.lower_model(qmodel).run(x, raw=True)[0])


def test_quantization_aware_finetuning_exports_bit_exact(digits, tmp_path):
    """The fine-tuned weights are what the file holds, and the file computes what the integer graph of
    the trained fake-quant model computes, bit for bit, on the numpy reference and on the C kernels
    (and what the fake-quant model predicts)."""
    qmodel, policy = _finetuned(digits, bits=4)
    untouched = fx.lower_model(fx.quantize_model(digits["model"], policy))
    path = tmp_path / "qat.tflite"
    fx.export_tflite(qmodel, path)
    x = digits["x_test"]
    got = fx.Interpreter(path).predict(x, raw=True)
    np.testing.assert_array_equal(got, fx.lower_model(qmodel).run(x, raw=True)[0])
    assert not np.array_equal(got, untouched.run(x, raw=True)[0])  # the training is in the file
    np.testing.assert_array_equal(fx.Interpreter(path, engine="host").predict(x, raw=True), got)
    probs = fx.Interpreter(path).predict(x)
    assert np.mean(probs.argmax(-1) == qmodel.predict(x, verbose=0).argmax(-1)) >= 0.99


def test_one_callback_in_a_keras3_fit(digits):
    """Most users train with Keras 3: the same callback in its `fit`, the same policy as the one-call API."""
    import keras as keras3

    keras3.utils.set_random_seed(0)
    model = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(6, 3, activation="relu"),
                               keras3.layers.MaxPooling2D(2), keras3.layers.Flatten(),
                               keras3.layers.Dense(10, activation="softmax")])
    model.compile(keras3.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    cb = fx.FxPQNetCallback(digits["x"][:200], max_accuracy_drop=0.05, strict=False, **QUICK)
    model.fit(digits["x"], digits["y"], epochs=4, batch_size=64, verbose=0, callbacks=[cb])
    assert cb.result is not None
    assert cb.result.policy.to_dict() == fx.FxPQNet(0.05, **QUICK).quantize(model, digits["x"][:200]).policy.to_dict()


def test_the_low_level_callback_stops_loudly_with_trainable_weights(digits):
    """Before: with `qmodel.trainable` left at its default, fit returned early and the reason was only in
    search.state.message. Now SearchStoppedError says why and names the fix."""
    from fxpq_keras.callbacks import Agreement, DistillationLoss, PrecisionAdaptation

    search = PrecisionSearch(digits["model"], digits["x"][:300], options=SearchOptions(0.02, samples=300))
    qmodel = search.qmodel  # trainable: the default
    qmodel.compile(keras.optimizers.Adam(0.1), loss=DistillationLoss(from_logits=not search.probabilities),
                   metrics=[Agreement()])
    decide = search.decision_index
    with pytest.raises(fx.SearchStoppedError, match="budget NOT met.*qmodel.trainable = False"):
        qmodel.fit(search.calibration.x[decide], search.targets[decide], batch_size=len(decide), epochs=200,
                   verbose=0, shuffle=False, callbacks=[PrecisionAdaptation(search)])
    assert search.state.done and not search.state.budget_met
