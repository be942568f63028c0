"""Transposed convolution (forward, backward-input, backward-weight) over the suite's
conv_transpose layers."""

from . import _common
from ._common import PASSES, layer_names

LAYERS = layer_names("conv_transpose")


class ConvTranspose(_common._Time):
    params = [LAYERS, PASSES, _common.DTYPES]


class ConvTransposeMemory(_common._PeakMem):
    params = [LAYERS, PASSES, ["float32"]]


class ConvTransposeRate(_common._Rate):
    params = [LAYERS, PASSES, ["float32"]]


class ConvTransposeVsTorch(_common._VsTorch):
    params = [LAYERS, PASSES, ["float32"]]
