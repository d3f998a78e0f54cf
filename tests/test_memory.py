"""Device accounting (fxpq_keras.memory): the planned arena equals the C runner's on every model,
the policy-driven cost equals the cost of the re-exported file, and gains follow the device's
rules (containers, the peak, int32 biases)."""

from __future__ import annotations

import numpy as np
import pytest
from test_export_graphs import cnn_graph
from test_export_keras import _every_layer_model

import fxpq_keras as fx
from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.memory import device_model_from_graph, file_memory, layout_from_tflite
from fxpq_keras.kernels.runner import HostRunner
from fxpq_keras.memory import plan_arena


def test_plan_arena_reuses_dead_bytes_and_aligns():
    # a chain a -> b -> c: a and c never live together, so c reuses a's bytes
    assert plan_arena([100, 50, 100], [-1, 0, 1], [0, 1, 2]) == 104 + 56
    # everything alive at once: aligned sizes add up
    assert plan_arena([3, 5, 8], [0, 0, 0], [2, 2, 2]) == 24
    # zero-size records take nothing
    assert plan_arena([0, 0], [0, 0], [1, 1]) == 0


@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"max_bits": 8}), (2, {"signed_only": True, "bias": False}),
                                     (3, {"max_bits": 12}), (4, {"int8": True}), (5, {"n": 8})])
@pytest.mark.parametrize("float_input", [True, False])
def test_ram_bytes_equal_the_runner_plan(seed, kw, float_input):
    graph, _ = cnn_graph(seed, **kw)
    data = export_tflite(graph, float_input=float_input)
    planned = HostRunner(data).stats["planned_bytes"]
    mem = file_memory(data)
    assert mem.runner_planned_bytes == planned
    assert device_model_from_graph(graph, float_input=float_input).runner_planned_bytes() == planned
    from_graph = device_model_from_graph(graph, float_input=float_input, other_flash_bytes=mem.other_flash_bytes)
    assert from_graph.cost() == mem
    assert mem.ram_bytes == mem.tflm_planned_bytes + mem.tflm_persistent_bytes
    assert mem.flash_bytes == len(data)
    # weights are bit-packed: the file's weight tensors hold exactly the packed bytes
    _, info = fx.flatbuffer.read_bytes(data)
    assert mem.weight_bytes == sum(info.weight_bytes.values())
    assert mem.bias_bytes == 4 * sum(len(n.bias) for n in graph.nodes if n.bias is not None)


@pytest.fixture(scope="module")
def keras_case():
    model = _every_layer_model()
    x = np.random.default_rng(1).uniform(0, 1, (32, 12, 12, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x)
    qmodel = fx.quantize_model(model, policy)
    return qmodel, policy


def _exported_cost(qmodel, policy):
    fx.set_policy(qmodel, policy)
    data = export_tflite(qmodel)
    return file_memory(data), HostRunner(data).stats["planned_bytes"]


def test_policy_cost_equals_the_exported_file(keras_case):
    qmodel, policy = keras_case
    device = device_model_from_graph(fx.lower_model(qmodel))
    rng = np.random.default_rng(3)
    outputs = [(layer, ds) for layer, ds, _ in policy.data_structures() if ds == "output"]
    weights = [(layer, ds) for layer, ds, _ in policy.data_structures() if ds == "weights"]
    for _ in range(4):
        p = policy.copy()
        for layer, ds in outputs:
            p.set(layer, ds, bits=int(rng.choice([6, 8, 9, 12, 16])))
        for layer, ds in weights:
            p.set(layer, ds, bits=int(rng.integers(2, 17)))
        p.constrain_biases()
        predicted = device.cost(p)
        actual, planned = _exported_cost(qmodel, p)
        assert predicted.runner_planned_bytes == actual.runner_planned_bytes == planned
        assert predicted.ram_bytes == actual.ram_bytes
        assert predicted.weight_bytes == actual.weight_bytes
        assert predicted.bias_bytes == actual.bias_bytes
        # and a change given as `changes` costs what the changed policy costs
        layer, ds = outputs[int(rng.integers(len(outputs)))]
        q = p.copy()
        q.set(layer, ds, bits=10)
        assert device.cost(p, {(layer, ds): 10}) == device.cost(q)
    fx.set_policy(qmodel, policy)


def test_gains_follow_the_device_rules(keras_case):
    qmodel, policy = keras_case
    device = device_model_from_graph(fx.lower_model(qmodel))
    base = device.cost(policy)
    # a bias is stored as int32 whatever its width
    assert device.gain(policy, "fc1", "bias", 8).total_bytes == 0
    # a weight saves exactly its packed bytes: fc1 is 8 x 12 values
    rows, k = 8, policy.get("fc1", "weights").elements // 8
    g = device.gain(policy, "fc1", "weights", 4, base=base)
    assert (g.flash_bytes, g.ram_bytes) == (rows * (k * 8 // 8 - (k * 4 + 7) // 8), 0)
    # an activation inside its container saves nothing; crossing to 16 bits costs RAM only if on the peak
    widened = []
    for layer, ds, _ in policy.data_structures():
        if ds != "output":
            continue
        assert device.gain(policy, layer, ds, 5).total_bytes == 0  # still one byte per element
        wide = device.gain(policy, layer, ds, 9)
        assert wide.flash_bytes == 0 and wide.ram_bytes <= 0
        widened.append(wide.ram_bytes)
    # tensors on the peak cost RAM when widened, the others cost nothing
    assert min(widened) < 0 and max(widened) == 0


def test_layout_of_a_stock_tflite_int8_file():
    """A TFLiteConverter int8 file is measured by the same planner (stock ops need no scratch)."""
    tf = pytest.importorskip("tensorflow")
    from fxpq_keras._tf import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    w, _ = model.layers[-1].get_weights()
    model.layers[-1].set_weights([w, np.array([0.1, -0.2, 0.3], np.float32)])  # a zero bias is dropped
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data = conv.convert()
    mem = file_memory(data)
    layout = layout_from_tflite(data)
    assert mem.flash_bytes == len(data)
    assert mem.weight_bytes == 4 * 3 * 3 * 1 + 3 * 144  # int8 weights
    assert mem.bias_bytes == 4 * (4 + 3)
    assert sum(layout.scratch) == 0
    # float input 256 B + int8 input 64 B are alive together at the first QUANTIZE
    assert mem.ram_bytes >= 256 + 64


def test_gain_agrees_with_the_full_accounting(keras_case):
    """gain() is the difference of two full accountings (TFLM's arena included), and TFLM's
    persistent bytes never move with the policy: RAM is saved only on TFLM's planned peak."""
    qmodel, policy = keras_case
    device = device_model_from_graph(fx.lower_model(qmodel))
    base = device.cost(policy)
    saved = []
    for layer, ds, _ in policy.data_structures():
        if ds == "bias":
            continue
        for bits in (4, 9, 16):
            g = device.gain(policy, layer, ds, bits, base=base)
            q = policy.copy()
            q.set(layer, ds, bits=bits)
            new = device.cost(q)
            assert (g.flash_bytes, g.ram_bytes) == (base.flash_bytes - new.flash_bytes, base.ram_bytes - new.ram_bytes)
            assert new.tflm_persistent_bytes == base.tflm_persistent_bytes
            assert g.ram_bytes == base.tflm_planned_bytes - new.tflm_planned_bytes
            saved.append(g.ram_bytes)
    assert min(saved) < 0  # widening a tensor on the peak costs RAM
    # and a changed policy's predicted RAM is the re-exported file's
    layer, ds = next((lay, d) for lay, d, _ in policy.data_structures() if d == "output")
    q = policy.copy()
    q.set(layer, ds, bits=12)
    actual, _ = _exported_cost(qmodel, q)
    assert device.cost(q).ram_bytes == actual.ram_bytes
    fx.set_policy(qmodel, policy)
