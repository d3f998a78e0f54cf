"""A CNN trained on scikit-learn's 8x8 digits: uniform 8-bit dynamic fixed point keeps its accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import fxpq_keras as fx
from fxpq_keras._tf import keras

L = keras.layers


@pytest.fixture(scope="module")
def digits_model():
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1400], order[1400:]
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", use_bias=False)(i)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    o = L.Dense(10, activation="softmax")(h)
    model = keras.Model(i, o)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train], y[train], epochs=60, batch_size=32, verbose=0)
    return model, x[train], x[test], y[test]


def test_uniform_8bit_loses_at_most_one_point(digits_model):
    model, x_train, x_test, y_test = digits_model
    float_acc = float((model.predict(x_test, verbose=0).argmax(-1) == y_test).mean())
    assert float_acc > 0.9, "the float model did not train"
    policy = fx.Policy.uniform(model, 8, x_train[:256])
    qmodel = fx.quantize_model(model, policy)
    fq_acc = float((qmodel.predict(x_test, verbose=0).argmax(-1) == y_test).mean())
    ref = fx.lower_model(qmodel).run(x_test)[0]
    ref_acc = float((ref.argmax(-1) == y_test).mean())
    assert float_acc - fq_acc <= 0.01
    assert float_acc - ref_acc <= 0.01
    assert policy.memory().compression_weights == pytest.approx(4.0, rel=0.01)  # biases are 32-bit
