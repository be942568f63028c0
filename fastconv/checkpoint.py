"""Checkpoints: a model's ``state_dict`` (plus a little JSON metadata) in one ``.npz`` file.

Saving is atomic: the file is written to a temporary name in the same folder, flushed and
fsync'ed, then renamed over the target with ``os.replace``, so a crash leaves either the old
checkpoint or the new one, never a torn file. Loading never unpickles (``allow_pickle=False``),
reads and checks every array before touching the model, and turns truncated, corrupt or
pickled files into a ``ValueError`` that names the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np

_META = "__meta__"


def save(path: str | os.PathLike, model_or_state, meta: dict | None = None) -> None:
    """Write a checkpoint atomically.

    ``model_or_state`` is a ``fastconv.nn.Module`` (its ``state_dict()`` is saved) or a
    mapping of names to NumPy arrays; ``meta`` is any JSON-serialisable dict (epoch,
    accuracy, model name), returned by ``load``.

    Shapes:
        model_or_state: arrays of any shape, numeric dtypes
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    arrays = {}
    for key, value in state.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"state[{key!r}] has dtype {a.dtype}; checkpoints hold numeric arrays only")
        arrays[key] = a
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved for the metadata; rename that state key")
    arrays[_META] = np.frombuffer(json.dumps(meta or {}).encode(), np.uint8)
    with atomic_file(path) as f:
        np.savez(f, **arrays)


@contextmanager
def atomic_file(path: str | os.PathLike):
    """Open a temporary file next to ``path`` for binary writing; on success flush, fsync and
    ``os.replace`` it onto ``path`` (then fsync the folder), on error delete it. Readers see
    the old file or the complete new one, never a partial write."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by ``save``: ``(state_dict, meta)``.

    Every array is read (and its CRC checked) here, so a damaged file fails now, whole.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for anything that is
    not an intact checkpoint (truncated, corrupt, a pickle, a plain ``.npy``).

    Shapes:
        returns: the saved arrays, shapes and dtypes as saved
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as f:  # our handle, so a failing np.load cannot leak it
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a bare .npy array, not a checkpoint archive")
            with npz:
                arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(
            f"checkpoint {path!r} is unreadable: truncated, corrupt, pickled or not a checkpoint ({err})"
        ) from err
    if _META not in arrays:
        raise ValueError(
            f"checkpoint {path!r} has no {_META!r} entry: not written by fastconv.checkpoint.save"
        )
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint {path!r} has corrupt metadata ({err})") from err
    return arrays, meta


def load_into(model, path: str | os.PathLike) -> dict:
    """Load a checkpoint into ``model`` (a ``fastconv.nn.Module``) and return its metadata.

    Keys and shapes are checked against ``model.state_dict()`` before anything is copied,
    so on any error the model is left exactly as it was.
    """
    state, meta = load(path)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} does not fit {type(model).__name__}: "
            f"missing keys {missing}, unexpected keys {unexpected}"
        )
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise ValueError(
                f"checkpoint {os.fspath(path)!r}: {key!r} has shape {state[key].shape}, the model expects {shape}"
            )
    model.load_state_dict(state)
    return meta
