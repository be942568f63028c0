"""Seeded batching: a ``DataLoader`` over in-memory arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


class DataLoader:
    """Iterate over ``(x, y)`` in mini-batches, reshuffled each epoch from one seeded generator.

    The same ``seed`` gives the same batches in the same order, epoch after epoch, on every
    machine. ``transform(x_batch, rng)`` (e.g. ``lambda x, rng: random_translate(x, 2, rng)``)
    augments each batch with the loader's generator. ``len(loader)`` is the number of batches.

    Shapes:
        x: (N, ...) inputs; y: (N,) labels
        yields: x_batch (B, ...), y_batch (B,), B <= batch_size
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int | None = 0,
        drop_last: bool = False,
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform = transform
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            xb = self.x[idx]
            if self.transform is not None:
                xb = self.transform(xb, self.rng)
            yield xb, self.y[idx]
