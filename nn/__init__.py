"""nn: a hand-written, autograd-free layer library on NumPy and CuPy.

Each op is a pair of pure functions (``*_forward`` returning ``(y, cache)`` and
``*_backward``) with its formula in the docstring; the layer classes own the
parameters and call them.
"""
from .backend import get_array_module, gpu_available, to_device, to_numpy, xp_for
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, Flatten, LeakyReLU, Linear,
                     MaxPool2d, Upsample)
from .losses import softmax_cross_entropy
from .module import Module, Sequential
from .optim import SGD, Adam
from .serialization import load_module, save_module

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "Flatten", "LeakyReLU", "Linear", "MaxPool2d",
    "Upsample", "Module", "Sequential", "SGD", "Adam", "softmax_cross_entropy",
    "save_module", "load_module", "get_array_module", "gpu_available", "to_device",
    "to_numpy", "xp_for",
]
