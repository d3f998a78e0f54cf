"""Filter TensorFlow's native (C++/absl) log lines out of file descriptor 2.

Why this exists: TensorFlow 2.21 logs from C++ through absl before absl is initialised, and those
lines ignore TF_CPP_MIN_LOG_LEVEL (tensorflow/tensorflow#100442): every import prints
"oneDNN custom operations are on", "Could not find cuda drivers", and the first op prints
"failed call to cuInit". They are written straight to fd 2, so Python's `sys.stderr` cannot
catch them. `hide_native_logs` points fd 2 at a pipe for the duration of a block and forwards every
line except absl-format log lines of the given severities, so the level the user asked for is
honoured and everything else (Python warnings, our own messages, fatal errors) still arrives, in
order, as it is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

# absl/glog prefix: severity letter, MMDD, time, thread id, file:line]
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\] ")
# What the user set, read before fxpq_keras._tf sets its default of 2 (the CLI's default is 3).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def severities_for_level(level: str | int | None) -> str:
    """The severities TF_CPP_MIN_LOG_LEVEL hides: 0 none, 1 INFO, 2 +WARNING, 3 +ERROR (never FATAL)."""
    try:
        n = int(level) if level is not None else 0
    except ValueError:
        n = 0
    return "IWE"[: max(0, min(n, 3))]


# On a machine without a GPU, TensorFlow's first op logs this at ERROR severity although nothing is
# wrong: hidden unless the user set TF_CPP_MIN_LOG_LEVEL (fxpq_keras._tf initialises the devices
# inside the filter, so the line never reaches a search's output)
NO_GPU_NOISE = (b"failed call to cuInit",)


def _hidden(line: bytes, severities: bytes, noise: tuple[bytes, ...] = ()) -> bool:
    if line.rstrip(b"\r\n") == _ABSL_PREAMBLE:
        return b"W" in severities
    m = _ABSL_LINE.match(line)
    return bool(m) and (m.group(1) in severities or any(text in line for text in noise))


@contextlib.contextmanager
def hide_native_logs(severities: str, noise: tuple[bytes, ...] = ()) -> Iterator[None]:
    """Drop absl log lines of `severities` (e.g. "IW"), and absl lines holding one of the `noise`
    texts, written to fd 2 inside the block."""
    if not severities and not noise:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters): do nothing
        yield
        return
    read_fd, write_fd = os.pipe()
    wanted = severities.encode()

    def forward() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not _hidden(line, wanted, noise))
                if out:
                    os.write(saved, out)
            if pending and not _hidden(pending, wanted, noise):
                os.write(saved, pending)

    thread = threading.Thread(target=forward, name="fxpq-native-log-filter", daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the forwarder drains and stops
        thread.join(timeout=5)
        os.close(saved)


__all__ = ["NO_GPU_NOISE", "USER_TF_LOG_LEVEL", "hide_native_logs", "severities_for_level"]
