"""Convolution algorithms and the other array ops jaxdr's models are built from.

    from jaxdr import ops
    y = ops.conv2d(x, kernel, stride=1, padding=1, groups=1, impl="auto")   # impl in ops.CONV_IMPLS
    y = ops.max_pool(x, 2, 2, "SAME")
    y = ops.scale_channels(x, gate, tree_grad=ops.cpu_fast_paths(impl))   # gate [C] or [B, C]

Modules: `conv` (dispatch), `xla_conv`, `taps` (one-channel inputs), `im2col` (and the dense
tiny-map conv), `winograd`,
`native_conv` (opt-in AVX-512 kernel: `native_conv.load()`), `pooling`, `reductions`
(tree sums), `channel_scale`. Pure functions of arrays: nothing here knows about masks or models.
"""
from jaxdr.ops.channel_scale import scale_channels  # noqa: F401
from jaxdr.ops.conv import CONV_IMPLS, conv2d, cpu_fast_paths  # noqa: F401
from jaxdr.ops.pooling import max_pool  # noqa: F401
