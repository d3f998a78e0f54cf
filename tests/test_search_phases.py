"""One test (or a few) per phase module of the search (fxpq_keras/search/phases/, docs/algorithm.md
"Phases, and where each lives"), each on a small digits model: what the phase promises, checked
directly on the search state rather than through the end result."""

from __future__ import annotations

import numpy as np
import pytest

from fxpq_keras._tf import keras
from fxpq_keras.search import PrecisionSearch, SearchOptions, space
from fxpq_keras.search.phases import greedy, jump, uniform, walkback

OPTS = {"samples": 300, "max_bits": 10, "max_accuracy_drop": 0.02}


@pytest.fixture(scope="module")
def digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:1200], d.target[:1200], epochs=10, batch_size=64, verbose=0)
    return {"model": model, "x": x[:1200]}


def search(digits: dict, **options) -> PrecisionSearch:
    return PrecisionSearch(digits["model"], digits["x"], options=SearchOptions(**{**OPTS, **options}))


def test_space_widths_and_fracs() -> None:
    """Device activations: one byte or where they are; paper: every width down to min_bits; a
    per-channel range gives one frac per channel."""
    assert space.widths(12, 2, True) == [8, 12] and space.widths(8, 2, True) == [8]
    assert space.widths(10, 9, True) == [9, 10]
    assert space.widths(5, 2, False) == [2, 3, 4, 5]
    assert space.range_frac(np.array([1.0, 0.25]), 8, True) == (6, 8)
    assert space.range_frac(1.0, 8, True, offset=1) == 7


def test_uniform_floor_is_the_lowest_width_within_the_budget(digits: dict) -> None:
    s = search(digits)
    best = uniform.best_uniform(s)
    assert best is not None
    bits, policy, _ = best
    assert walkback.validates(s, policy)
    if bits > s.options.min_bits:
        assert not walkback.validates(s, uniform.uniform_policy(s, bits - 1))
    assert {d.bits for _, ds, d in policy.data_structures() if ds != "bias"} == {bits}


def test_restart_from_uniform_under_the_speed_cap(digits: dict) -> None:
    """Under a speed cap the restart from the best uniform policy is refused only when that policy is above
    the cap and slower than the result it would replace: from the (slower) start policy it goes on."""
    s = search(digits, max_slowdown=1e-6)  # a cap no policy meets
    uniform.bisect_uniform(s)
    assert s.best_uniform is not None
    u = s.best_uniform[1]
    assert s.device.instructions(u) > s.instruction_cap
    assert s.device.instructions(u) < s.device.instructions(s.state.policy)  # the start is slower still
    assert uniform.continue_from_uniform(s) and s.restarted
    assert s.state.policy.to_dict() == u.to_dict()


def test_jump_moves_everything_at_once_within_the_budget(digits: dict) -> None:
    s = search(digits)
    start = s.state.policy.memory().total_bits
    jump.jump(s)
    assert s.within_budget(s.state.check) and s.state.policy.memory().total_bits < start
    assert [st.action for st in s.state.trajectory] == ["start", "jump"] and len(s.trail) == 2
    assert all(s.bits[k] == s.state.policy.get(*k).bits for k in s.keys)


def test_greedy_step_accepts_or_freezes(digits: dict) -> None:
    """Each counted greedy step either lowers the policy one step within the budget or freezes a data
    structure; the heap never holds a frozen one's step."""
    s = search(digits, fast_start=False)
    s.advance(0)  # the start phase: the uniform floor, then the heap
    assert s.phase == "greedy" and s.heap
    for _ in range(15):
        before, frozen = s.state.policy.memory().total_bits, set(s.state.frozen)
        done = greedy.step(s)
        if s.state.done:
            break
        after = s.state.policy.memory().total_bits
        assert done == 0 or after < before or s.state.frozen > frozen
        assert s.within_budget(s.state.check)
        assert not any(c.key in s.state.frozen and not c.also for _, _, c in s.heap)


def test_walk_back_ends_on_a_policy_the_validation_copies_accept(digits: dict) -> None:
    s = search(digits, max_accuracy_drop=0.05)
    s.run()
    assert s.state.done and s.trail
    assert s.trail[-1].to_json() == s.state.policy.to_json()
    assert walkback.validates(s, s.state.policy) == s.state.budget_met


def test_the_driver_runs_the_phases_in_order(digits: dict) -> None:
    """start, the uniform floor, the jump (the first advance runs them), greedy steps, done."""
    s = search(digits)
    s.advance(0)
    assert s.best_uniform is not None and s.phase == "greedy"
    assert [st.action for st in s.state.trajectory] == ["start", "jump"]
    s.run()
    actions = [st.action for st in s.state.trajectory]
    assert actions[:2] == ["start", "jump"] and actions[-1] == "done"
    assert set(actions[2:-1]) <= {"lower", "freeze", "back", "uniform"}


def test_release_frees_evaluation_state_and_changes_no_result(digits: dict) -> None:
    """A finished search frees its stored activations and tensor copies (FxPQNet does it between its
    passes); evaluating again makes them anew and measures the same."""
    s = search(digits, max_accuracy_drop=0.05)
    s.run()
    before = s.evaluate(s.state.policy, check=True)
    s.release()
    assert all(ev._base is None and ev._tensors is None for ev in (s.decide, s.checker))
    assert s.evaluate(s.state.policy, check=True) == before


def test_searches_on_one_calibration_share_their_sets(digits: dict) -> None:
    """FxPQNet's RAM-first passes on the same calibration use the first pass's blended sets and the
    teacher's outputs on them, not copies."""
    first = search(digits)
    second = PrecisionSearch(first.calibration, options=SearchOptions(**OPTS))
    assert second.validation_x is first.validation_x and second.check_x is first.check_x
    assert np.array_equal(second.budget_meter.targets, first.budget_meter.targets)


def test_host_figures() -> None:
    from fxpq_keras.host import memory_size, peak_rss_bytes, trim_heap

    peak = peak_rss_bytes()
    assert peak is None or peak > 10_000_000  # a Python with TensorFlow holds more than 10 MB
    assert memory_size(4_380_000_000) == "4.38 GB" and memory_size(512_000_000) == "512 MB"
    assert memory_size(None) == "unknown"
    trim_heap()  # (returns memory to the system where it can; never fails)


def test_peak_rss_can_be_measured_per_search() -> None:
    """bench/quality.py measures each model's search apart in one process: after a reset the peak is
    the current size, not the earlier, larger high-water mark."""
    from fxpq_keras.host import peak_rss_bytes, reset_peak_rss

    block = np.ones(200_000_000 // 8)  # 200 MB resident
    high = peak_rss_bytes()
    del block
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    assert peak_rss_bytes() < high - 100_000_000
