"""Flat parameter and gradient buffers: every array of one dtype in one 1-D buffer.

    flat = move_into_flat_buffers(model)    # the one explicit step
    optimizer = SGD(flat, lr=0.01)

For the n parameters sharing an array module and a dtype (a group), with sizes
s_k and offsets o_k = s_1 + ... + s_(k-1),
    P (N,), G (N,),  N = s_1 + ... + s_n
hold every parameter and every gradient, and after ``move_into_flat_buffers``
the model reads and writes them there:
    model.params[k] = P[o_k : o_k + s_k].reshape(shape_k),   model.grads[k] likewise in G,
so an update over all parameters is a few array ops on (P, G) per group, and
whatever writes into ``params[k][...]`` or ``grads[k][...]`` (a backward,
loading a checkpoint) writes into P or G. The optimizer owns P and G; the
one step that points a model's arrays into them is ``move_into_flat_buffers``,
called by whoever builds the optimizer (building an optimizer changes no
model). Replacing an entry afterwards (``to()``, ``astype()``, an assignment)
detaches it: ``holds()`` turns False, the optimizer refuses to step, and
``Optimizer.reattach`` makes the step again.

The order of the keys in a buffer is ``model.flat_keys()``: the parameters'
own order, except that a model whose parameters are views of stacked arrays
puts the members of a stack next to each other, so that the stack is one span
of P (``span``; ifm/stacked.py).
"""
from .backend import copy_into, get_array_module


class FlatLayout:
    """Where each key's array lies in its group's 1-D buffer (no arrays held)."""

    def __init__(self, entries):
        """``entries``: (key, array) pairs in buffer order."""
        self.keys, self.where = [], {}          # where[key] = (group, offset, shape, size)
        self.kinds, self.sizes = [], []         # per group: (array module, dtype), length
        for key, a in entries:
            kind = (get_array_module(a), a.dtype)
            if kind not in self.kinds:
                self.kinds.append(kind)
                self.sizes.append(0)
            group = self.kinds.index(kind)
            self.where[key] = (group, self.sizes[group], tuple(a.shape), a.size)
            self.sizes[group] += a.size
            self.keys.append(key)

    def zeros(self):
        """One zero buffer (N,) per group."""
        return [xp.zeros(size, dtype=dtype) for (xp, dtype), size in zip(self.kinds, self.sizes)]

    def views(self, buffers):
        """{key: view of shape_k} into ``buffers`` (one per group), in key order."""
        views = {}
        for key in self.keys:
            group, offset, shape, size = self.where[key]
            views[key] = buffers[group][offset:offset + size].reshape(shape)
        return views

    def span(self, buffers, keys):
        """The view (len(keys), *shape) of ``buffers`` over ``keys``: arrays of one shape
        and group, laid out one after the other (ValueError otherwise)."""
        group, offset, shape, size = self.where[keys[0]]
        for i, key in enumerate(keys):
            if self.where[key] != (group, offset + i * size, shape, size):
                raise ValueError(f"{keys} do not lie one after another in one flat buffer")
        return buffers[group][offset:offset + len(keys) * size].reshape((len(keys),) + shape)


class FlatParameters:
    """The buffers P and G of ``model``'s parameters (one per group), and their views.

    ``params``, ``grads``: {key: view}. Made by ``move_into_flat_buffers``.
    """

    def __init__(self, model):
        self.model = model
        self.layout = FlatLayout((k, model.params[k]) for k in model.flat_keys())
        if set(self.layout.keys) != set(model.params):
            raise ValueError(f"flat_keys {sorted(self.layout.keys)} are not the parameters "
                             f"{sorted(model.params)}")
        self.P, self.G = self.layout.zeros(), self.layout.zeros()
        self.params, self.grads = self.layout.views(self.P), self.layout.views(self.G)

    def span(self, keys):
        """(P's view, G's view) over ``keys`` (``FlatLayout.span``)."""
        return self.layout.span(self.P, keys), self.layout.span(self.G, keys)

    def holds(self):
        """Whether the model still reads every parameter and gradient here."""
        return all(self.params[k] is a for k, a in self.model.params.items()) and all(
            self.grads[k] is a for k, a in self.model.grads.items())

    def gradients(self, grads):
        """G, one buffer per group, holding ``grads`` (keyed like the parameters).

        Entries that are views into G are used as they are, others copied in.
        """
        if set(grads) != set(self.grads):
            raise KeyError(f"gradients for {sorted(grads)}, parameters {self.layout.keys}")
        for key, grad in grads.items():
            view = self.grads[key]
            if grad is not view:
                view[...] = grad
        return self.G


def move_into_flat_buffers(model):
    """Move ``model``'s parameters and gradients into new flat buffers; return them.

    The parameters' and gradients' values are copied into P and G, and the model
    is pointed at the views (``model.attach``): afterwards
    ``model.params[k]`` is ``flat.params[k]``, a view of P, and
    ``model.grads[k]`` a view of G. ``model`` is an nn.module.Module (a bare
    Module holding dicts serves for loose arrays).
    """
    flat = FlatParameters(model)
    for key in flat.layout.keys:
        copy_into(flat.params[key], model.params[key])
        copy_into(flat.grads[key], model.grads[key])
    model.attach(flat)
    return flat
