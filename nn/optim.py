"""Optimizers updating parameter arrays in place, a few array ops over all of them.

Each takes the flat buffers of a model's parameters (``flat =
nn.flat.move_into_flat_buffers(model)``, the explicit step after which the
model reads its parameters and gradients in one buffer P (N,) and one G (N,)
per dtype) and owns them; ``step()`` updates P from G, where backward wrote
the gradients. The state is flat too, laid out as P. Per group, elementwise
over (N,), with p a parameter and grad its gradient:

SGD (the common-framework form, coupled weight decay):
    grad <- grad + wd * p;   v <- mu * v + grad;   p <- p - lr * v
Adam (Kingma & Ba; bias corrections folded into a host scalar step size):
    grad <- grad + wd * p;   m <- m + (1 - b1)(grad - m);   v <- v + (1 - b2)(grad^2 - v)
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_hat),
    eps_hat = eps * sqrt(1 - b2^t)   (identical to the textbook update)
Adamax (Kingma & Ba, Sec. 7.1, the infinity norm; eps as in PyTorch, eps = 0 is the paper's):
    m <- m + (1 - b1)(grad - m);   u <- max(b2 u, |grad| + eps);   p <- p - lr / (1 - b1^t) * m / u
"""
import math

import numpy as np

from .backend import copy_into, get_array_module
from .flat import move_into_flat_buffers


class Optimizer:
    """Base: the flat parameters (nn/flat.py), the learning rate, the flat state.

    Each state slot ("velocity", "m", "v") is one buffer (N,) per group of P,
    laid out as P; ``state[slot][k]`` is key k's view (shape of ``params[k]``);
    ``self.step_count`` counts updates.
    """

    def __init__(self, flat, lr, slots=()):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.flat = flat
        self.lr = lr
        self.step_count = 0
        self._slots = {slot: flat.layout.zeros() for slot in slots}

    def reattach(self):
        """Move the model's parameters into flat buffers again and keep the state's values.

        For a model whose arrays were replaced after they were moved (``to()``,
        ``astype()``): the new buffers have the new arrays' device and dtype,
        and the state is copied over (cast, moved).
        """
        kept = self._state_views()
        self.flat = move_into_flat_buffers(self.flat.model)
        self._slots = {slot: self.flat.layout.zeros() for slot in self._slots}
        self._copy_state(kept)

    def _state_views(self):
        """{"slot/key": view} into the current state buffers."""
        layout = self.flat.layout
        return {f"{slot}/{k}": view for slot, buffers in self._slots.items()
                for k, view in layout.views(buffers).items()}

    def _copy_state(self, arrays):
        """Copy {"slot/key": array} into the state in place: the same entries and shapes."""
        state = self._state_views()
        if set(arrays) != set(state):
            raise ValueError(f"optimizer state: missing {sorted(set(state) - set(arrays))}, "
                             f"unexpected {sorted(set(arrays) - set(state))}")
        for key, target in state.items():
            if tuple(target.shape) != tuple(arrays[key].shape):
                raise ValueError(f"optimizer state {key!r}: shape {arrays[key].shape} "
                                 f"!= {target.shape}")
        for key, target in state.items():
            copy_into(target, arrays[key])

    @property
    def state(self):
        """{slot: {key: view}}, each view shaped as ``params[key]``."""
        layout = self.flat.layout
        return {slot: layout.views(buffers) for slot, buffers in self._slots.items()}

    def step(self, grads=None):
        """One update from the gradients in G; ``grads`` (keyed like the parameters), when
        given, are copied into G first, except entries that are G's own views."""
        if not self.flat.holds():
            raise RuntimeError("the model's parameters were replaced after they were moved "
                               "into the optimizer's flat buffers (to(), astype() or an "
                               "assignment): call the optimizer's reattach() first")
        G = self.flat.G if grads is None else self.flat.gradients(grads)
        self.step_count += 1
        self._update(self.flat.P, G)

    def _update(self, P, G):
        """Update each group's P (N,) in place from its G (N,) and state buffers."""
        raise NotImplementedError

    def state_dict(self):
        """Flat dict of arrays "slot/key" (views), plus "step_count" (for checkpoints)."""
        out = self._state_views()
        out["step_count"] = np.array(self.step_count)
        return out

    def load_state_dict(self, state):
        """Copy a ``state_dict`` back in place: the same entries and shapes, or ValueError."""
        if "step_count" not in state:
            raise ValueError("optimizer state: missing ['step_count']")
        self._copy_state({k: v for k, v in state.items() if k != "step_count"})
        self.step_count = int(state["step_count"])


class SGD(Optimizer):
    """Per group, P, G, V (N,):  G' = G + wd * P;  V <- mu * V + G';  P <- P - lr * V."""

    def __init__(self, flat, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(flat, lr, ["velocity"] if momentum else [])
        self.momentum, self.weight_decay = momentum, weight_decay

    def _update(self, P, G):
        for i, (p, grad) in enumerate(zip(P, G)):
            if self.weight_decay:
                grad = grad + self.weight_decay * p
            if self.momentum:
                v = self._slots["velocity"][i]
                v *= self.momentum
                v += grad
                grad = v
            p -= self.lr * grad


class Adam(Optimizer):
    """Per group, P, G, M, V (N,), the module docstring's update with host scalars
    step_size = lr * sqrt(1 - b2^t) / (1 - b1^t) and eps_hat = eps * sqrt(1 - b2^t)."""

    def __init__(self, flat, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(flat, lr, ["m", "v"])
        self.b1, self.b2 = betas
        self.eps, self.weight_decay = eps, weight_decay

    def _update(self, P, G):
        t = self.step_count
        correction2 = math.sqrt(1 - self.b2 ** t)
        step_size = self.lr * correction2 / (1 - self.b1 ** t)
        eps_hat = self.eps * correction2
        for p, grad, m, v in zip(P, G, self._slots["m"], self._slots["v"]):
            if self.weight_decay:
                grad = grad + self.weight_decay * p
            xp = get_array_module(p)
            m += (1 - self.b1) * (grad - m)
            v += (1 - self.b2) * (grad * grad - v)
            p -= step_size * m / (xp.sqrt(v) + eps_hat)


class Adamax(Optimizer):
    """Per group, P, G, M, U (N,), the module docstring's update with the host scalar
    step_size = lr / (1 - b1^t)."""

    def __init__(self, flat, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(flat, lr, ["m", "u"])
        self.b1, self.b2 = betas
        self.eps = eps

    def _update(self, P, G):
        step_size = self.lr / (1 - self.b1 ** self.step_count)
        for p, grad, m, u in zip(P, G, self._slots["m"], self._slots["u"]):
            xp = get_array_module(p)
            m += (1 - self.b1) * (grad - m)
            u *= self.b2
            xp.maximum(u, xp.abs(grad) + self.eps, out=u)
            p -= step_size * m / u
