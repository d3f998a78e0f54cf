"""Long mode of the randomized tests: `FXPQ_LONG=N` draws N times as many cases.

The normal suite (CI) runs each randomized test at its base count with a fixed seed, so a run is
reproducible. `FXPQ_LONG=N` (what `bash scripts/fuzz.sh --long` sets) multiplies those counts by N
and draws fresh cases every run (hypothesis not derandomized; the QEMU batches take the seed
FXPQ_LONG_SEED, random unless given, printed in every failure), so repeated long runs keep
exploring instead of replaying the same cases.
"""

from __future__ import annotations

import os
import secrets

FACTOR = max(1, int(os.environ.get("FXPQ_LONG", "0") or 0))
LONG = FACTOR > 1
SEED = int(os.environ.get("FXPQ_LONG_SEED") or (secrets.randbits(32) if LONG else 0))


def examples(base: int) -> int:
    """How many cases a randomized test draws: `base`, times FXPQ_LONG in long mode."""
    return base * FACTOR
