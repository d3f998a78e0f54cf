"""The paper tail (device objective; docs/algorithm.md "Objective"): when every step that saves a
byte is done, activations whose one-byte step saves no byte are lowered by the paper bits they save,
so the leftover budget buys the paper's count (`SearchEngine.gain` ranks them while `search.tail`)."""

from __future__ import annotations

from ..run import SearchRun
from . import greedy


def paper_tail(search: SearchRun) -> bool:
    """Device objective, when every step that saves a byte is done and the best uniform policy has
    fewer paper bits (never more device bytes): go on with the activations whose one-byte step
    saves no byte (off the RAM peak), ranked by the paper bits they save, so the leftover budget
    buys the paper's count before the uniform policy is considered. True when the search goes on."""
    u = search.best_uniform
    if (search.device is None or search.tail or u is None or not search.options.layerwise
            or search.cost(u[1]) < search.cost(search.state.policy)
            or u[1].memory().total_bits >= search.state.policy.memory().total_bits):
        return False
    search.tail = True
    search.parked = []
    search.version += 1
    search._say("every byte-saving step is done; lowering activations off the RAM peak for the paper's bit "
                "count (the best uniform policy has fewer bits)")
    search.phase = "greedy"
    greedy.fill_heap(search)
    return not search.state.done
