"""Flat parameter and gradient buffers: every array of one dtype in one 1-D buffer.

For the n parameters sharing an array module and a dtype (a group), with sizes
s_k and offsets o_k = s_1 + ... + s_(k-1),
    P (N,), G (N,),  N = s_1 + ... + s_n
hold every parameter and every gradient, and the live dicts are rebound to views
    params[k] = P[o_k : o_k + s_k].reshape(shape_k),   grads[k] likewise in G,
so an update over all parameters is a few array ops on (P, G) per group, and
whatever writes into ``params[k][...]`` or ``grads[k][...]`` writes into P or G.
Replacing an entry instead (``params[k] = new``) detaches it; ``holds()`` says so.
"""
from .backend import copy_into, get_array_module


class FlatLayout:
    """Where each key's array lies in its group's 1-D buffer (no arrays held)."""

    def __init__(self, arrays):
        self.keys = list(arrays)
        groups = {}
        for key, a in arrays.items():
            groups.setdefault((get_array_module(a), a.dtype), []).append((key, a.shape, a.size))
        self.groups = list(groups.items())      # [((xp, dtype), [(key, shape, size)])]

    def zeros(self):
        """One zero buffer (N,) per group."""
        return [xp.zeros(sum(size for _, _, size in entries), dtype=dtype)
                for (xp, dtype), entries in self.groups]

    def views(self, buffers):
        """{key: view of shape_k} into ``buffers`` (one per group), in key order."""
        views = {}
        for buffer, (_, entries) in zip(buffers, self.groups):
            offset = 0
            for key, shape, size in entries:
                views[key] = buffer[offset:offset + size].reshape(shape)
                offset += size
        return {key: views[key] for key in self.keys}


class FlatParameters:
    """``params`` (a live mapping) flattened into buffers P, and gradient buffers G.

    Building copies every parameter into P and rebinds ``params[k]`` to its view;
    given ``grads`` (the mapping backward fills, keyed like ``params``), it rebinds
    ``grads[k]`` to its view into G, so backward writes straight into G.
    ``holds()`` is False once an entry of either was replaced (``to()``,
    ``astype()``, assignment): the caller then builds a new FlatParameters.
    """

    def __init__(self, params, grads=None):
        self.params, self.grads = params, grads
        self.layout = FlatLayout(params)
        self.P, self.G = self.layout.zeros(), self.layout.zeros()
        self._param_views = self.layout.views(self.P)
        self._grad_views = self.layout.views(self.G)
        self._bind(params, self._param_views)
        if grads is not None:
            self._bind(grads, self._grad_views)

    @staticmethod
    def _bind(arrays, views):
        for key, view in views.items():
            copy_into(view, arrays[key])
            arrays[key] = view

    def holds(self):
        """Whether every entry of ``params`` (and of ``grads``, if given) is still its view."""
        return _all_views(self.params, self._param_views) and (
            self.grads is None or _all_views(self.grads, self._grad_views))

    def gradients(self, grads):
        """G, one buffer per group, holding ``grads`` (keyed like ``params``).

        Entries that are views into G are used as they are, others copied in.
        """
        if len(grads) != len(self._grad_views):
            raise KeyError(f"gradients for {sorted(grads)}, parameters {self.layout.keys}")
        for key, g in grads.items():
            view = self._grad_views[key]
            if g is not view:
                view[...] = g
        return self.G


def _all_views(arrays, views):
    return len(arrays) == len(views) and all(views.get(k) is a for k, a in arrays.items())
