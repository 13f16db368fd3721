"""The layers: thin stateful wrappers around the pure forward/backward pairs.

Each layer runs the speed path of its op (nn/fast/; the formula is in nn/<op>.py)
and writes its parameter gradients into its ``grads`` arrays.

Activations are batch last: feature maps (C, H, W, N), features (F, N); the
shape is the memory order (C-contiguous). A network converts its (N, C, H, W)
images once, at its entry (``nn.layout.from_nchw``).

Parameter names and shapes follow the common framework layout, so weights can
be compared one to one: Conv2d W (O, C, k, k), b (O,); Linear W (out, in),
b (out,); BatchNorm gamma, beta (C,) with running_mean, running_var buffers.
Parameters are created on the host as float32 (``dtype=`` to change); use
``.to("gpu")`` to move a layer and ``.astype(np.float64)`` for checks.
"""
import numpy as np

from . import upsample
from .fast import activations, batchnorm, conv, linear, pooling
from .init import default_rng, kaiming_normal
from .module import Layer


class Conv2d(Layer):
    def __init__(self, in_ch, out_ch, kernel_size, padding=0, stride=1,
                 rng=None, dtype=np.float32, negative_slope=0.2):
        super().__init__()
        k = kernel_size
        self.padding, self.stride = padding, stride
        self.input_grad = True      # False: backward skips dx (a network's first layer)
        self.params["W"] = kaiming_normal((out_ch, in_ch, k, k), in_ch * k * k,
                                          default_rng(rng), negative_slope, dtype)
        self.params["b"] = np.zeros(out_ch, dtype=dtype)
        self._zero_grads()
        self._cache = None

    def forward(self, x):
        y, self._cache = conv.conv2d_forward(x, self.params["W"], self.params["b"],
                                             self.padding, self.stride)
        return y

    def backward(self, dy):
        dx, _, _ = conv.conv2d_backward(dy, self._cache, self.input_grad,
                                        dw=self.grads["W"], db=self.grads["b"])
        return dx


class Linear(Layer):
    def __init__(self, in_features, out_features, rng=None, dtype=np.float32,
                 negative_slope=0.2):
        super().__init__()
        self.params["W"] = kaiming_normal((out_features, in_features), in_features,
                                          default_rng(rng), negative_slope, dtype)
        self.params["b"] = np.zeros(out_features, dtype=dtype)
        self._zero_grads()
        self._x = None

    def forward(self, x):
        y, self._x = linear.linear_forward(x, self.params["W"], self.params["b"])
        return y

    def backward(self, dy):
        dx, _, _ = linear.linear_backward(dy, self._x, self.params["W"],
                                          dW=self.grads["W"], db=self.grads["b"])
        return dx


class _BatchNorm(Layer):
    expected_ndim = None

    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.params["gamma"] = np.ones(num_features, dtype=dtype)
        self.params["beta"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)
        self._zero_grads()
        self._cache = None

    @property
    def running_mean(self):
        return self.buffers["running_mean"]

    @property
    def running_var(self):
        return self.buffers["running_var"]

    def forward(self, x):
        if x.ndim != self.expected_ndim:
            raise ValueError(f"{type(self).__name__} expects {self.expected_ndim}-D input, "
                             f"got shape {x.shape}")
        y, self._cache = batchnorm.batchnorm_forward(
            x, self.params["gamma"], self.params["beta"], self.buffers["running_mean"],
            self.buffers["running_var"], self.training, self.momentum, self.eps)
        return y

    def backward(self, dy):
        dx, _, _ = batchnorm.batchnorm_backward(dy, self._cache, dgamma=self.grads["gamma"],
                                                dbeta=self.grads["beta"])
        return dx


class BatchNorm2d(_BatchNorm):
    """Batch norm of (C, H, W, N) maps, statistics per channel over H, W, N."""
    expected_ndim = 4


class BatchNorm1d(_BatchNorm):
    """Batch norm of (C, N) features, statistics per feature over N."""
    expected_ndim = 2


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self._y = None

    def forward(self, x):
        y, self._y = activations.leaky_relu_forward(x, self.negative_slope)
        return y

    def backward(self, dy):
        return activations.leaky_relu_backward(dy, self._y, self.negative_slope)


class MaxPool2d(Layer):
    """Max pooling, 2x2 window, stride 2 (the only size the network needs)."""

    def __init__(self, kernel_size=2):
        super().__init__()
        if kernel_size != 2:
            raise ValueError("MaxPool2d supports kernel_size=2 (stride 2) only")
        self._cache = None

    def forward(self, x):
        y, self._cache = pooling.maxpool2x2_forward(x)
        return y

    def backward(self, dy):
        return pooling.maxpool2x2_backward(dy, self._cache)


class Upsample(Layer):
    """Integer-factor upsampling of (C, H, W, N) maps, "nearest" or "bilinear" (half-pixel)."""

    def __init__(self, scale_factor, mode="nearest"):
        super().__init__()
        if int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"Upsample needs a positive integer scale_factor, got {scale_factor}")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.scale, self.mode = int(scale_factor), mode
        self._x_shape = None

    def forward(self, x):
        self._x_shape = x.shape
        if self.mode == "nearest":
            return upsample.nearest_upsample_forward(x, self.scale)
        return upsample.bilinear_upsample_forward(x, self.scale)

    def backward(self, dy):
        if self.mode == "nearest":
            return upsample.nearest_upsample_backward(dy, self.scale)
        return upsample.bilinear_upsample_backward(dy, self.scale, self._x_shape)


class Flatten(Layer):
    """(C, H, W, N) -> (C*H*W, N), features ordered (c, i, j) as in NCHW frameworks;
    backward restores the shape."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(-1, x.shape[-1])

    def backward(self, dy):
        return dy.reshape(self._shape)
