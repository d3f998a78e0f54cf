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
    if keras3_file(path):
        try:
            return load_keras3(path)
        except Keras3TranslationError as exc:
            raise _cli_error(f"{path}: {first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - as below, for Keras 3's loader
            raise _cli_error(f"cannot load {path} as a Keras 3 model: {first_line(exc)}") from None
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - TF/Keras raise many types, all mean "not a loadable model"
        raise _cli_error(f"cannot load {path} as a tf_keras model: {first_line(exc)}") from None


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


class StagedOutputDir:
    """An output folder written all at once: nothing half-written, never old and new files mixed.

    Built before the work starts, it refuses a file in the way or an existing folder holding
    anything but `owned` names (so a folder of the user's own files is never replaced). `with
    staged as tmp:` gives a fresh folder beside the target; on success it replaces the target whole
    (`replaced` says whether earlier results were there), on any error or interrupt it is deleted
    and the target is untouched.
    """

    def __init__(self, path: str, owned: tuple[str, ...]) -> None:
        self.path = os.path.abspath(path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise _cli_error(f"output directory is a file: {path}")
        existing = sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
        foreign = [name for name in existing if name not in owned]
        if foreign:
            raise _cli_error(f"output directory {path} holds other files ({', '.join(foreign[:3])}"
                             f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty directory")
        self.replaced = bool(existing)
        self.discarded = False
        self.tmp = ""
        self._check_writable()

    def _check_writable(self) -> None:
        """Fail now, not after the search, when the folder cannot be written (issue 24 item 8)."""
        import tempfile

        parent, name = os.path.split(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=f".{name}.probe-", dir=parent))
        except OSError as exc:
            raise _cli_error(f"cannot write the output directory {self.path}: {exc.strerror or exc}") from None

    def __enter__(self) -> str:
        import tempfile

        parent, name = os.path.split(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        except OSError as exc:
            raise _cli_error(f"cannot create output directory {self.path}: {exc.strerror or exc}") from None
        return self.tmp

    def discard(self) -> None:
        """Drop what was staged: the target stays as it was when the block ends."""
        self.discarded = True

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        if exc_type is not None or self.discarded:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = ""
        if os.path.isdir(self.path):
            old = self.tmp + ".old"
            os.rename(self.path, old)
        os.rename(self.tmp, self.path)
        if old:
            shutil.rmtree(old, ignore_errors=True)


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


def drop_fraction(text: str) -> float:
    """argparse type: the max top-1 drop, a fraction in (0, 1)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"max_accuracy_drop must be in (0, 1), got {text}")
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
