"""`Policy.copy` (field by field, the search copies a policy per trial): what deepcopy gives."""

from __future__ import annotations

import copy

from fxpq_keras.policy import Policy

POLICY = {"fxpq_policy": 1,
          "input": {"bits": 8, "frac": 7, "signed": False, "elements": 64},
          "layers": [{"name": "conv", "kind": "conv2d", "inputs": ["input"],
                      "weights": {"bits": 4, "frac": [3, 4], "signed": True, "elements": 18},
                      "bias": {"bits": 16, "frac": 10, "signed": True, "elements": 2},
                      "output": {"bits": 6, "frac": 3, "signed": False, "elements": 72}},
                     {"name": "flat", "kind": "flatten", "inputs": ["conv"]}],
          "channel_scales": {"conv": [1.0, 0.5]}}


def test_copy_equals_deepcopy_and_is_independent() -> None:
    p = Policy.from_dict(POLICY)
    c = p.copy()
    assert c.to_json() == copy.deepcopy(p).to_json() == p.to_json()
    assert vars(c).keys() == vars(p).keys() and type(c) is Policy
    c.set("conv", "weights", bits=3, frac=(2, 2))
    c.set("input", "output", bits=6)
    c.layers["conv"]["inputs"].append("other")
    c.channel_scales["conv"] = (2.0, 2.0)
    assert p.to_json() == Policy.from_dict(POLICY).to_json()
