"""Data: the bundled digits set, an IDX (MNIST-format) reader, augmentation, seeded batching."""

from .augment import random_crop, random_horizontal_flip, random_translate
from .digits import NUM_CLASSES, load_digits, resize_bilinear
from .idx import load_mnist, read_idx
from .loader import DataLoader

__all__ = [
    "DataLoader",
    "NUM_CLASSES",
    "load_digits",
    "load_mnist",
    "random_crop",
    "random_horizontal_flip",
    "random_translate",
    "read_idx",
    "resize_bilinear",
]
