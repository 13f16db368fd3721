"""Modules: objects that own parameters, their gradients and buffers; and layers.

``Module`` is the state every such object shares: ``params`` and ``grads``
(dicts with the same keys), ``buffers`` (batch norm's running statistics),
the training flag, moving and casting, and the two steps by which an
optimizer's flat buffers take the parameters over (``flat_keys``, ``attach``;
nn/flat.py). It declares no forward or backward: each kind of module declares
its own.

``Layer`` is the protocol of the library's layers (nn/layers.py, nn.Sequential):
``forward(x) -> y`` caches what ``backward`` needs; ``backward(dy) -> dx``
fills ``grads`` (overwriting, not accumulating: written into the existing
arrays, which may be views of an optimizer's flat buffer) and returns dx.
Modules with other inputs or outputs say so in their own base class or
docstring: the stacked layers of IFM's critics (ifm/stacked.StackedLayer), the
flow's invertible layers (ice/flow.Invertible), the estimators
(ifm/estimators.Estimator), and the models (the classifier, D_l, the
regularizer). The math lives in the pure functions of the sibling modules;
the classes only hold state and call them.
"""
from collections.abc import ItemsView, MutableMapping


from .backend import get_array_module, to_device


class Module:
    """params, grads and buffers (module docstring); no forward or backward of its own."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True

    def children(self):
        return []

    def train(self, mode=True):
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """Parameters and buffers by name, as a flat dict (the arrays themselves)."""
        state = dict(self.params)
        state.update(self.buffers)
        return state

    def to(self, device):
        """Move parameters, gradients and buffers to "cpu" or "gpu" (new dict entries,
        which an optimizer's flat buffers no longer hold: see Optimizer.reattach)."""
        for store in (self.params, self.grads, self.buffers):
            for key in list(store):
                store[key] = to_device(store[key], device)
        for child in self.children():
            child.to(device)
        return self

    def astype(self, dtype):
        """Cast parameters, gradients and buffers (e.g. to float64 for checks); new
        dict entries, as ``to()``."""
        for store in (self.params, self.grads, self.buffers):
            for key in list(store):
                store[key] = store[key].astype(dtype)
        for child in self.children():
            child.astype(dtype)
        return self

    def flat_keys(self):
        """The keys of ``params`` in the order a flat buffer lays them out (nn/flat.py):
        their own order here."""
        return list(self.params)

    def attach(self, flat, prefix=""):
        """Read and write every parameter and gradient at its view in ``flat`` from now on
        (``flat.params[prefix + key]``, ``flat.grads[prefix + key]``): the second half of
        nn.flat.move_into_flat_buffers, which has copied the values there."""
        for key in self.params:
            self.params[key] = flat.params[prefix + key]
            self.grads[key] = flat.grads[prefix + key]

    def _zero_grads(self):
        """Give every parameter a zero gradient (called once, when the params exist)."""
        self.grads = zeros_like_params(self.params)

    def _set_grads(self, **grads):
        for key, grad in grads.items():
            self.grads[key][...] = grad


class Layer(Module):
    """A layer: ``forward(x) -> y`` and ``backward(dy) -> dx`` (module docstring)."""

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)


class NamespacedDict(MutableMapping):
    """A live, flat view of several modules' dicts: key "prefix.name".

    Reading and assigning go straight to the owning module's dict, so
    ``model.params["0.W"] = new`` takes effect on the next forward (and leaves an
    optimizer's flat buffers, as ``to()`` does).
    """

    def __init__(self, owners, attribute):
        self._owners = owners          # list of (prefix, module)
        self._attribute = attribute    # "params", "grads" or "buffers"

    def _locate(self, key):
        prefix, dot, name = key.partition(".")
        for owner_prefix, module in self._owners:
            if owner_prefix == prefix and dot:
                store = getattr(module, self._attribute)
                if name in store:
                    return store, name
        raise KeyError(key)

    def __getitem__(self, key):
        store, name = self._locate(key)
        return store[name]

    def __setitem__(self, key, value):
        store, name = self._locate(key)
        store[name] = value

    def __delitem__(self, key):
        raise TypeError("parameters cannot be deleted from a module")

    def __iter__(self):
        for prefix, module in self._owners:
            for name in getattr(module, self._attribute):
                yield f"{prefix}.{name}"

    def __len__(self):
        return sum(len(getattr(m, self._attribute)) for _, m in self._owners)

    def items(self):
        return _NamespacedItems(self)


class _NamespacedItems(ItemsView):
    """(key, array) pairs read from the owners' dicts directly, not key by key."""

    def __iter__(self):
        for prefix, module in self._mapping._owners:
            for name, value in getattr(module, self._mapping._attribute).items():
                yield f"{prefix}.{name}", value


class Container(Module):
    """A module made of named child modules; exposes their state as flat views."""

    def __init__(self, named_children):
        super().__init__()
        self._named = list(named_children)
        self.params = NamespacedDict(self._named, "params")
        self.grads = NamespacedDict(self._named, "grads")
        self.buffers = NamespacedDict(self._named, "buffers")

    def named_children(self):
        """[(name, module)], in the order the state keys take."""
        return list(self._named)

    def children(self):
        return [m for _, m in self._named]

    def to(self, device):
        for child in self.children():
            child.to(device)
        return self

    def astype(self, dtype):
        for child in self.children():
            child.astype(dtype)
        return self

    def flat_keys(self):
        return [f"{name}.{key}" for name, child in self._named for key in child.flat_keys()]

    def attach(self, flat, prefix=""):
        for name, child in self._named:
            child.attach(flat, f"{prefix}{name}.")


class Sequential(Container, Layer):
    """Layers applied in order; backward runs them in reverse. Keys are "i.name"."""

    def __init__(self, *layers):
        super().__init__((str(i), layer) for i, layer in enumerate(layers))
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


def zeros_like_params(params):
    """Fresh zero arrays keyed like ``params`` (e.g. optimizer state)."""
    return {k: get_array_module(p).zeros_like(p) for k, p in params.items()}
