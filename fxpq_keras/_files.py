"""Files that are never half-written: the bytes go to a temporary file beside the target, which
then replaces it in one rename (an interrupt or error leaves the old file, or none, never a part).

The temporary files and folders are created private (mkstemp 0600, mkdtemp 0700); before they take
the user's name they get the mode `open` and `mkdir` would have given them (0644 and 0755 under
umask 022), so what fxpq writes is as readable as what any other tool writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no getter before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(path: str | Path) -> None:
    """Give a file or folder the mode open/mkdir would have given it: 0666 or 0777 less the umask."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def temporary_dir(prefix: str, parent: str | Path) -> str:
    """A new folder in `parent` for output that is renamed into place when whole, with the usual mode."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    usual_mode(path)
    return path


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to `path` all at once."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        usual_mode(tmp)
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
