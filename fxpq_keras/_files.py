"""Files that are never half-written: the bytes go to a temporary file beside the target, which
then replaces it in one rename (an interrupt or error leaves the old file, or none, never a part)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to `path` all at once."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.filename is None:  # a full disk names no file: name the one being written
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
