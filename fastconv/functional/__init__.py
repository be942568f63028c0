"""The functional API: array in, array out, PyTorch's names and arguments.

One module per concept (convolution, transposed convolution, pooling); this package
re-exports their public functions.
"""

from .conv import (
    conv1d,
    conv1d_backward_bias,
    conv1d_backward_input,
    conv1d_backward_weight,
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv3d,
    conv3d_backward_bias,
    conv3d_backward_input,
    conv3d_backward_weight,
)

# -- transposed convolution (conv_transpose.py) --
from .conv_transpose import (  # noqa: E402
    conv_transpose1d,
    conv_transpose1d_backward_input,
    conv_transpose1d_backward_weight,
    conv_transpose2d,
    conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
    conv_transpose3d,
    conv_transpose3d_backward_input,
    conv_transpose3d_backward_weight,
)

# -- pooling (pool.py) --
from .adaptive import (  # noqa: E402
    adaptive_avg_pool1d,
    adaptive_avg_pool1d_backward,
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool3d,
    adaptive_avg_pool3d_backward,
    adaptive_max_pool1d,
    adaptive_max_pool1d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    adaptive_max_pool3d,
    adaptive_max_pool3d_backward,
)
from .pool import (  # noqa: E402
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    lp_pool1d,
    lp_pool1d_backward,
    lp_pool2d,
    lp_pool2d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool3d,
    max_pool3d_backward,
)
from .unpool import (  # noqa: E402
    max_unpool1d,
    max_unpool1d_backward,
    max_unpool2d,
    max_unpool2d_backward,
    max_unpool3d,
    max_unpool3d_backward,
)

__all__ = [name for name in dir() if name.startswith(("conv", "max_", "avg_", "lp_", "adaptive_"))]
