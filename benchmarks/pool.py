"""Max and average pooling, forward and backward (``backward_input``), over the suite's
pooling layers. Their rate counts one operation per window element."""

from . import _common
from ._common import PASSES, layer_names

LAYERS = layer_names("max_pool", "avg_pool")
POOL_PASSES = PASSES[:2]


class Pool(_common._Time):
    params = [LAYERS, POOL_PASSES, _common.DTYPES]


class PoolRate(_common._Rate):
    params = [LAYERS, POOL_PASSES, ["float32"]]


class PoolVsTorch(_common._VsTorch):
    params = [LAYERS, POOL_PASSES, ["float32"]]
