"""A selected model (best_digit.npz, best_texture.npz): its weights and what rebuilds and feeds it.

The file holds the arrays of the classifier's state_dict (no IFM D, no D_nc)
and one more entry, ``model_json``: a JSON string (0-d array; nothing is
pickled) with
    method          "baseline", "ifm" or "ice-firevnet"
    settings        the run's settings (every train.py flag that defines the model and its
                    data; not --epochs, which a resume may extend)
    normalization   the train split's per-channel mean and std of images / 255
    data            the dataset's provenance record (textures, checksums, seed)
    sources         where the data were read from when the run started
    selected        epoch, step and validation accuracies of this checkpoint
so that ``load`` needs nothing beside it. Files written before this entry
existed take the same record from the config.json of their run folder.

Inputs: a classifier of the paper's Table 1 (baseline, ifm) reads
x = (I / 255 - mean) / std; iCE's encoder reads the bin centres
x = 2 (I + 1/2) / 256 - 1 (as in training's evaluation). I is uint8
(N, 3, 32, 32); x is batch last (3, 32, 32, N).
"""
import json
import os
from typing import Callable, NamedTuple

import numpy as np

from nn.layout import from_nchw
from nn.serialization import load_npz, load_state_into

META_KEY = "model_json"
FORMAT = 1


class SavedModelError(Exception):
    """A file that cannot be used as a saved model; the message names it and the fix."""


def record(settings, dataset, sources, selected):
    """The ``model_json`` record of a run's selected checkpoint."""
    kept = {k: v for k, v in settings.items() if k != "epochs"}
    return {"format": FORMAT, "method": settings["method"], "settings": kept,
            "normalization": {"mean": [float(v) for v in dataset.mean],
                              "std": [float(v) for v in dataset.std]},
            "data": dataset.provenance, "sources": sources, "selected": selected}


def with_record(state, meta):
    """The arrays to save: ``state`` plus the record as a 0-d JSON string."""
    return {**state, META_KEY: np.array(json.dumps(meta, sort_keys=True))}


def split_record(arrays):
    """(state arrays, record or None) of a loaded file."""
    arrays = dict(arrays)
    meta = arrays.pop(META_KEY, None)
    return arrays, (None if meta is None else json.loads(str(meta)))


def normalize(images, mean, inv_std):
    """x = (I / 255 - mean) / std, float32 (3, H, W, N) from uint8 images I (N, 3, H, W);
    mean and inv_std (3, 1, 1, 1) on the images' device."""
    x = from_nchw(images, np.float32)
    x *= np.float32(1 / 255)
    x -= mean
    x *= inv_std
    return x


def normalization_arrays(mean, std, xp):
    """(mean, 1 / std) as float32 (3, 1, 1, 1) arrays on xp, for ``normalize``."""
    mean = np.asarray(mean, np.float32).reshape(3, 1, 1, 1)
    inv_std = (1.0 / np.asarray(std, np.float32)).reshape(3, 1, 1, 1)
    return xp.asarray(mean), xp.asarray(inv_std)


def build_model(settings, rng=None, dtype=np.float32):
    """The classifier a run of these settings selects checkpoints of (weights from ``rng``)."""
    if settings["method"] == "ice-firevnet":
        from ice.objective import IceModel
        return IceModel(3, depth=settings["flow_depth"], rng=rng, dtype=dtype)
    from experiment.classifier import Classifier
    return Classifier(rng=rng, dtype=dtype, features_at=settings.get("pair_features") or
                      "pre-pool")


class SavedModel(NamedTuple):
    model: object               # in eval mode, on the CPU
    meta: dict                  # the record (module docstring)
    inputs: Callable            # uint8 images (N, 3, H, W) -> the model's x (3, H, W, N)


def read_record(path, arrays):
    """(state, record) of a loaded file: its own record, or its run folder's config.json."""
    state, meta = split_record(arrays)
    if meta is not None:
        return state, meta
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.exists(config_path):
        raise SavedModelError(f"{path} holds no model record and no config.json lies beside "
                              "it: evaluate a best_*.npz inside the run folder that wrote it")
    from experiment.settings import old_run_settings
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    settings = old_run_settings(config["settings"])
    data = config["data"]
    return state, {"format": 0, "method": settings["method"], "settings": settings,
                   "normalization": {"mean": data["mean"], "std": data["std"]}, "data": data,
                   "sources": config.get("sources"), "selected": None}


def load(path, xp=np):
    """The SavedModel in ``path`` (best_*.npz), its arrays on xp; SavedModelError if unusable."""
    from experiment.runfolder import unreadable_npz
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SavedModelError(f"{path}: no such file; give a best_digit.npz or best_texture.npz "
                              "of a run folder")
    try:
        arrays = load_npz(path)
    except Exception as err:                # damaged, not an .npz, pickled
        raise SavedModelError(unreadable_npz(path, err)) from None
    if any(k.startswith("clf/") for k in arrays):
        raise SavedModelError(f"{path} is a training checkpoint; evaluate the selected models "
                              "best_digit.npz or best_texture.npz beside it")
    state, meta = read_record(path, arrays)
    model = build_model(meta["settings"], rng=np.random.default_rng(0))
    model.to("gpu" if xp is not np else "cpu")
    try:
        load_state_into(model.state_dict(), state, path)
    except ValueError as err:
        raise SavedModelError(f"{err}; is it a file of this code's train.py?") from None
    if meta["method"] == "ice-firevnet":
        model.mark_initialized()
    model.eval()
    return SavedModel(model, meta, input_transform(meta, xp))


def input_transform(meta, xp):
    """uint8 images (N, 3, H, W) on xp -> the model's input x (module docstring)."""
    if meta["method"] == "ice-firevnet":
        from ice.objective import dequantize
        return lambda images: dequantize(images, np.float32(0.5))
    mean, inv_std = normalization_arrays(meta["normalization"]["mean"],
                                         meta["normalization"]["std"], xp)
    return lambda images: normalize(images, mean, inv_std)
