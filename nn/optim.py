"""Optimizers updating parameter arrays in place.

Both take ``params`` and ``grads`` as dicts with the same keys (a model's, or
several models' merged) and keep their state keyed the same way, allocated
once. Updates happen in place, so every view of a parameter stays valid.

SGD (the common-framework form, coupled weight decay):
    g <- g + wd * p;   v <- mu * v + g;   p <- p - lr * v
Adam (Kingma & Ba; bias corrections folded into a host scalar step size):
    g <- g + wd * p;   m <- m + (1 - b1)(g - m);   v <- v + (1 - b2)(g^2 - v)
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_hat),
    eps_hat = eps * sqrt(1 - b2^t)   (identical to the textbook update)
Adamax (Kingma & Ba, Sec. 7.1, the infinity norm; eps as in PyTorch, eps = 0 is the paper's):
    m <- m + (1 - b1)(g - m);   u <- max(b2 u, |g| + eps);   p <- p - lr / (1 - b1^t) * m / u
"""
import math

import numpy as np

from .backend import get_array_module, to_device


class Optimizer:
    """Base: holds the live ``params`` dict, the learning rate and array state.

    ``self.state`` maps a slot name ("velocity", "m", "v") to a dict of arrays
    keyed like ``params``; ``self.step_count`` counts updates.
    """

    def __init__(self, params, lr):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.params = params
        self.lr = lr
        self.state = {}
        self.step_count = 0

    def _new_slot(self, slot):
        self.state[slot] = {k: get_array_module(p).zeros_like(p) for k, p in self.params.items()}

    def step(self, grads):
        raise NotImplementedError

    def state_dict(self):
        """Flat dict of arrays "slot/key", plus "step_count" (for checkpoints)."""
        out = {f"{slot}/{k}": a for slot, arrays in self.state.items() for k, a in arrays.items()}
        out["step_count"] = np.array(self.step_count)
        return out

    def load_state_dict(self, state):
        """Copy a ``state_dict`` back in place: the same entries and shapes, or ValueError."""
        expected = {"step_count"} | {f"{slot}/{k}" for slot, arrays in self.state.items()
                                     for k in arrays}
        if set(state) != expected:
            raise ValueError(f"optimizer state: missing {sorted(expected - set(state))}, "
                             f"unexpected {sorted(set(state) - expected)}")
        for key, value in state.items():
            if key == "step_count":
                self.step_count = int(value)
                continue
            slot, _, k = key.partition("/")
            if slot not in self.state or k not in self.state[slot]:
                raise KeyError(f"optimizer state has no entry {key!r}")
            target = self.state[slot][k]
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(f"optimizer state {key!r}: shape {value.shape} != {target.shape}")
            target[...] = get_array_module(target).asarray(value)

    def to(self, device):
        for arrays in self.state.values():
            for k in arrays:
                arrays[k] = to_device(arrays[k], device)
        return self


class SGD(Optimizer):
    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        if momentum:
            self._new_slot("velocity")

    def step(self, grads):
        self.step_count += 1
        for k, p in self.params.items():
            g = grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.state["velocity"][k]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.b1, self.b2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self._new_slot("m")
        self._new_slot("v")

    def step(self, grads):
        self.step_count += 1
        t = self.step_count
        correction2 = math.sqrt(1 - self.b2 ** t)
        step_size = self.lr * correction2 / (1 - self.b1 ** t)
        eps_hat = self.eps * correction2
        for k, p in self.params.items():
            g = grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            xp = get_array_module(p)
            m, v = self.state["m"][k], self.state["v"][k]
            m += (1 - self.b1) * (g - m)
            v += (1 - self.b2) * (g * g - v)
            p -= step_size * m / (xp.sqrt(v) + eps_hat)


class Adamax(Optimizer):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2 = betas
        self.eps = eps
        self._new_slot("m")
        self._new_slot("u")

    def step(self, grads):
        self.step_count += 1
        step_size = self.lr / (1 - self.b1 ** self.step_count)
        for k, p in self.params.items():
            g = grads[k]
            xp = get_array_module(p)
            m, u = self.state["m"][k], self.state["u"][k]
            m += (1 - self.b1) * (g - m)
            u *= self.b2
            xp.maximum(u, xp.abs(g) + self.eps, out=u)
            p -= step_size * m / u
