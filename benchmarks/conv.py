"""Convolution forward, backward-input and backward-weight over the suite's conv layers
(1-D ``tdnn_conv1d``, 2-D, 3-D ``video_conv3d``)."""

from . import _common
from ._common import PASSES, layer_names

LAYERS = layer_names("conv")


class Conv(_common._Time):
    params = [LAYERS, PASSES, _common.DTYPES]


class ConvMemory(_common._PeakMem):
    params = [LAYERS, PASSES, ["float32"]]


class ConvRate(_common._Rate):
    params = [LAYERS, PASSES, ["float32"]]


class ConvVsTorch(_common._VsTorch):
    params = [LAYERS, PASSES, ["float32"]]
