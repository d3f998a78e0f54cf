"""The host's resources as the long commands report and bound them (issue 21): peak resident
memory of the process, and giving freed heap memory back to the system."""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int | None:
    """The peak resident memory of this process so far, or since `reset_peak_rss` (Linux: VmHWM of
    /proc/self/status; elsewhere `resource.getrusage`; None where the platform has no such figure,
    e.g. Windows). What a user must have free to run the same command."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> bool:
    """Start `peak_rss_bytes` again from the current resident size (Linux >= 4.0: "5" to
    /proc/self/clear_refs), so one process can measure several searches apart (bench/quality.py).
    False where that is not possible: the peak then stays the process's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_size(nbytes: int | None) -> str:
    """`1.23 GB`, `456 MB` (decimal units); `unknown` for None."""
    if nbytes is None:
        return "unknown"
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc's `malloc_trim`; nothing elsewhere).

    glibc keeps memory that Python and TensorFlow freed in its arenas, so a search that released
    its sets and activations would still hold them in RSS for the next pass and the file check."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        pass


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most `arenas` heaps (`mallopt(M_ARENA_MAX)`; nothing elsewhere).

    By default every thread that allocates may get a heap of its own (up to 8 per core), and
    TensorFlow's thread pools allocate from many threads: memory freed in one heap is not reused by
    the others, so the resident size grows with each search pass. Call it before TensorFlow starts
    its threads (the CLI does, first thing); it changes where memory comes from, never a result."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, int(arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


__all__ = ["limit_malloc_arenas", "memory_size", "peak_rss_bytes", "reset_peak_rss", "trim_heap"]
