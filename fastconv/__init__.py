"""fastconv: convolution and pooling for NumPy, forward and backward, in Numba.

    import fastconv as fc
    y = fc.conv2d(x, w, b, stride=1, padding="same")

The functional API lives in ``fastconv.functional`` and is re-exported here; layers are in
``fastconv.nn``, optimizers in ``fastconv.optim``, networks in ``fastconv.models``.
"""

from . import config

config.install_cache_dir()  # before any kernel module imports numba

from . import nn  # noqa: E402
from .functional import *  # noqa: E402,F403
from .functional import __all__ as _functional_all  # noqa: E402
from .summary import summary  # noqa: E402  (the function shadows the module name)

__version__ = "0.1.0"
__all__ = [*_functional_all, "nn", "summary", "__version__"]
