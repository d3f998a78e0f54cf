"""Subcommands of the fxpq CLI (see fxpq_keras/cli.py), and the file loading they share.

The loaders turn every way a user's file can be wrong (missing, a directory, not the format,
TensorFlow's own multi-line load errors) into a one-line `CliError` that names the file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def _cli_error(message: str) -> Exception:
    from ..cli import CliError

    return CliError(message)


def require_file(path: str, what: str) -> str:
    """`path` if it is an existing file, else a CliError naming `what` it should have been."""
    if not os.path.exists(path):
        raise _cli_error(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise _cli_error(f"{what} is not a file: {path}")
    return path


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def load_keras_model(path: str) -> Any:
    """A float tf_keras model from a file: `.keras`/`.h5` written by tf_keras or by Keras 3 (Keras 3
    files are loaded with Keras 3 and translated, fxpq_keras/keras3.py), or a tf_keras SavedModel
    folder; any load failure is the user's file."""
    from .._tf import keras
    from ..keras3 import Keras3TranslationError, keras3_file, load_keras3

    if not os.path.exists(path):
        raise _cli_error(f"model file not found: {path}")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "keras_metadata.pb")):
        what = "a SavedModel without Keras metadata (what Keras 3's model.export() writes)" \
            if os.path.isfile(os.path.join(path, "saved_model.pb")) else "a folder that is not a SavedModel"
        raise _cli_error(f"{path} is {what}: fxpq needs the Keras model itself; save it with "
                         "model.save('model.keras') (Keras 3) and pass that file, or a tf_keras SavedModel folder")
    if keras3_file(path):
        try:
            return load_keras3(path)
        except Keras3TranslationError as exc:
            raise _cli_error(f"{path}: {first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - as below, for Keras 3's loader
            raise _cli_error(f"cannot load {path} as a Keras 3 model: {first_line(exc)}") from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - TF/Keras raise many types, all mean "not a loadable model"
        raise _cli_error(f"cannot load {path} as a tf_keras model: {first_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise _cli_error(f"{path} loads as a {type(model).__name__}, not a Keras model: save it with "
                         "model.save('model.keras') and pass that file")
    return model


def load_array(path: str, what: str, key: str = "x") -> np.ndarray:
    """A numeric array from .npy, or from .npz under `key`; object (pickled) arrays are refused."""
    import zipfile

    require_file(path, what)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _cli_error(f"cannot read {path} as .npy/.npz: {first_line(exc)}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if key not in data.files:
                raise _cli_error(f"{path} holds {sorted(data.files)}; it must hold the {what} as '{key}'")
            try:
                data = data[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _cli_error(f"cannot read '{key}' from {path}: {first_line(exc)}") from None
    if not isinstance(data, np.ndarray) or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise _cli_error(f"{path}: the {what} must be a numeric array, got dtype {getattr(data, 'dtype', '?')}")
    return data


def load_npz(path: str, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y or None) from an .npz holding 'x' and optionally 'y' (labels); a bare .npy is x alone."""
    x = load_array(path, what, "x")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        with np.load(path, allow_pickle=False) as npz:
            if "y" in npz.files:
                return x, load_array(path, "labels", "y")
    return x, None


def output_dir(path: str) -> str:
    """Create the output folder (and parents); a clear error when a file is in the way."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise _cli_error(f"output directory is a file: {path}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise _cli_error(f"cannot create output directory {path}: {exc.strerror or exc}") from None
    return path


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, a.encode(), at_fdcwd, b.encode(), rename_exchange) == 0


class StagedOutputDir:
    """An output folder written all at once: nothing half-written, never old and new files mixed.

    Built before the work starts, it refuses a file in the way, an existing folder holding
    anything but `owned` names (so a folder of the user's own files is never replaced), a location
    that cannot be written, and a folder another run is writing (a lock on `.NAME.lock` beside it,
    held until the end: concurrent runs into one folder would lose one's results). `with staged as
    tmp:` gives a fresh folder beside the target; on success it replaces the target in one atomic
    exchange where the system has one (`replaced` says whether earlier results were there); on
    any error, interrupt or SIGTERM it is deleted and the target is untouched. What a SIGKILL
    leaves (a staging folder, or the earlier results moved aside between two renames) is cleaned
    up or put back by the next run into the same folder.
    """

    def __init__(self, path: str, owned: tuple[str, ...]) -> None:
        self.path = os.path.abspath(path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise _cli_error(f"output directory is a file: {path}")
        self.discarded = False
        self.tmp = ""
        self._check_writable()
        self._lock()
        self._recover()
        existing = sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
        foreign = [name for name in existing if name not in owned]
        if foreign:
            self.release()
            raise _cli_error(f"output directory {path} holds other files ({', '.join(foreign[:3])}"
                             f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty directory")
        self.replaced = bool(existing)

    def _check_writable(self) -> None:
        """Fail now, not after the search, when the folder cannot be written (issue 24 item 8)."""
        import tempfile

        parent, name = os.path.split(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=f".{name}.probe-", dir=parent))
        except OSError as exc:
            raise _cli_error(f"cannot write the output directory {self.path}: {exc.strerror or exc}") from None

    def _lock(self) -> None:
        import fcntl

        parent, name = os.path.split(self.path)
        self._lock_path = os.path.join(parent, f".{name}.lock")
        self._lock_fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if we die
            # the holder unlinks the file when done: a lock on an unlinked file is no lock
            if os.fstat(self._lock_fd).st_ino != os.stat(self._lock_path).st_ino:
                raise OSError("lock file replaced")
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise _cli_error(f"another fxpq run is writing {self.path} (lock .{name}.lock held); wait for it or "
                             "choose another output directory") from None

    def release(self) -> None:
        """Give up the folder's lock (the end of the run) and remove the lock file."""
        if getattr(self, "_lock_fd", -1) >= 0:
            try:
                os.unlink(self._lock_path)
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _recover(self) -> None:
        """Under the lock, what earlier killed runs left beside the folder is stale: put moved-aside
        results back when the folder is missing, delete staging folders."""
        import shutil

        parent, name = os.path.split(self.path)
        for entry in sorted(os.listdir(parent)):
            if not entry.startswith(f".{name}.tmp-"):
                continue
            leftover = os.path.join(parent, entry)
            if entry.endswith(".old") and not os.path.exists(self.path):
                os.rename(leftover, self.path)
            else:
                shutil.rmtree(leftover, ignore_errors=True)

    def __enter__(self) -> str:
        import signal

        from .._files import temporary_dir

        parent, name = os.path.split(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            self.tmp = temporary_dir(f".{name}.tmp-", parent)
        except OSError as exc:
            raise _cli_error(f"cannot create output directory {self.path}: {exc.strerror or exc}") from None
        self._sigterm = None
        try:  # SIGTERM cleans up like an interrupt (only the main thread may set handlers)
            self._sigterm = signal.signal(signal.SIGTERM, _terminated)
        except ValueError:
            pass
        return self.tmp

    def discard(self) -> None:
        """Drop what was staged: the target stays as it was when the block ends."""
        self.discarded = True

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil
        import signal

        try:
            if exc_type is not None or self.discarded:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            if os.path.isdir(self.path) and _exchange(self.tmp, self.path):
                shutil.rmtree(self.tmp, ignore_errors=True)  # now holds the earlier results
                return
            old = ""
            if os.path.isdir(self.path):
                old = self.tmp + ".old"
                os.rename(self.path, old)  # a kill between these two renames: the next run puts it back
            os.rename(self.tmp, self.path)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if self._sigterm is not None:
                signal.signal(signal.SIGTERM, self._sigterm)
            self.release()


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def parent_dir_exists(path: str, what: str) -> str:
    """Refuse an output file whose folder does not exist before doing any work."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _cli_error(f"folder of the {what} does not exist: {parent}")
    return path


def bit_width(what: str) -> Any:
    """argparse type: a bit width in the activation range (formats.MIN_BITS..MAX_BITS), checked
    while parsing so the error comes before TensorFlow is imported."""
    import argparse

    from ..formats import check_activation_bits

    def parse(text: str) -> int:
        try:
            value = int(text)
            check_activation_bits(value, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc) if text.strip().lstrip("-").isdigit()
                                             else f"invalid integer: {text!r}") from None
        return value

    parse.__name__ = "bits"
    return parse


def _number(text: str, what: str = "number") -> float:
    """A float from an argparse value, or the ArgumentTypeError naming it."""
    import argparse

    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what}: {text!r}") from None


def drop_fraction(text: str) -> float:
    """argparse type: the max top-1 drop, a fraction in (0, 1)."""
    import argparse

    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"max_accuracy_drop must be in (0, 1), got {text}")
    return value


def head_room(text: str) -> float:
    """argparse type of --margin-sigma: the standard errors of head-room the budget keeps, 0..5."""
    import argparse

    value = _number(text)
    if not 0.0 <= value <= 5.0:
        raise argparse.ArgumentTypeError(f"margin_sigma must be in 0..5, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def slowdown(text: str) -> float | str | None:
    """argparse type of --max-slowdown: a factor >= 0, none (0 and none: no speed cap) or auto (the default:
    SearchOptions.max_slowdown)."""
    import argparse

    if text.strip().lower() == "none":
        return None
    if text.strip().lower() == "auto":
        return "auto"
    value = _number(text, "factor (a number, none or auto)")
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0 or none, got {text}")
    return value or None
