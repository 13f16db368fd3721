"""nn: a hand-written, autograd-free layer library on NumPy and CuPy.

Each op is a pair of pure functions (``*_forward`` returning ``(y, cache)`` and
``*_backward``) with its formula in the docstring (nn/conv.py, batchnorm.py, ...);
its speed path, split over the CPU's cores and writing gradients into given
arrays, is nn/fast/, which the layer classes (they own the parameters) run.
An optimizer takes a model's parameters moved into flat buffers
(``move_into_flat_buffers``, nn/flat.py).
"""
from .backend import get_array_module, gpu_available, to_device, to_numpy, xp_for
from .flat import move_into_flat_buffers
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, Flatten, LeakyReLU, Linear,
                     MaxPool2d, Upsample)
from .losses import softmax_cross_entropy
from .module import Layer, Module, Sequential
from .optim import SGD, Adam
from .serialization import load_module, save_module

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "Flatten", "LeakyReLU", "Linear", "MaxPool2d",
    "Upsample", "Layer", "Module", "Sequential", "SGD", "Adam", "softmax_cross_entropy",
    "save_module", "load_module", "get_array_module", "gpu_available", "to_device",
    "to_numpy", "xp_for", "move_into_flat_buffers",
]
