"""Saving and loading a module's parameters and buffers as .npz, without pickle.

The file holds one array per entry of ``module.state_dict()`` (parameters and
batch-norm running statistics), always as host NumPy arrays. Loading copies
values into the module's existing arrays, on whatever device they live, and
refuses missing, unexpected or mis-shaped entries with a message naming them.
"""
import os

import numpy as np

from .backend import get_array_module, to_numpy


def state_to_numpy(state):
    """Host copies of a state's arrays (sharing no memory with them).

    The device arrays of one dtype come to the host in ONE copy: joined into
    one flat array on the device, read back, and cut into the entries on the
    host (a checkpoint holds hundreds of entries; a read per entry would wait
    on the device each time).
    """
    host, on_device = {}, {}
    for key, value in state.items():
        if get_array_module(value) is np:
            host[key] = np.array(value, copy=True)
        else:
            on_device.setdefault(value.dtype, []).append(key)
    for keys in on_device.values():
        xp = get_array_module(state[keys[0]])
        flat = to_numpy(xp.concatenate([state[k].reshape(-1) for k in keys]))
        offsets = np.cumsum([0] + [state[k].size for k in keys])
        for key, lo, hi in zip(keys, offsets[:-1], offsets[1:]):
            host[key] = flat[lo:hi].reshape(state[key].shape)
    return {key: host[key] for key in state}


def write_atomic(path, write, mode="wb"):
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it onto ``path``.

    On any error, or a KeyboardInterrupt, the temporary file is removed and an
    existing ``path`` stays as it was, whole.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz_atomic(path, arrays):
    """Write a dict of arrays to ``path`` atomically (see write_atomic)."""
    write_atomic(path, lambda f: np.savez(f, **state_to_numpy(arrays)))


def load_npz(path):
    """Read every array of an .npz (pickle refused) into a plain dict."""
    with np.load(os.fspath(path), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_state_into(module_state, arrays, source="state"):
    """Copy ``arrays`` into the live ``module_state`` dict entry by entry."""
    missing = sorted(set(module_state) - set(arrays))
    unexpected = sorted(set(arrays) - set(module_state))
    if missing or unexpected:
        raise ValueError(f"{source}: does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    for key, target in module_state.items():
        value = arrays[key]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"{source}: entry {key!r} has shape {value.shape}, "
                             f"the model expects {target.shape}")
        target[...] = get_array_module(target).asarray(value, dtype=target.dtype)


def save_module(module, path):
    save_npz_atomic(path, module.state_dict())


def load_module(module, path):
    load_state_into(module.state_dict(), load_npz(path), source=os.fspath(path))
    return module
