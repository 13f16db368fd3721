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
import shlex
from typing import Callable, NamedTuple

import numpy as np

from ice.objective import IceModel, dequantize
from nn.layout import from_nchw
from nn.serialization import load_npz, load_state_into

from .classifier import Classifier
from .config import METHODS, Config
from .settings import command

META_KEY = "model_json"
FORMAT = 1


class SavedModelError(Exception):
    """A file that cannot be used as a saved model; the message names it and the fix."""


def record(config, dataset, sources, selected):
    """The ``model_json`` record of a selected checkpoint of a run of Config ``config``."""
    kept = {k: v for k, v in config.to_json().items() if k != "epochs"}
    return {"format": FORMAT, "method": config.method, "settings": kept,
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


def unreadable_npz(path, err):
    """Why an .npz (a saved model, a checkpoint) cannot be used, in words (never inviting
    allow_pickle=True)."""
    if isinstance(err, ValueError) and "Object arrays" in str(err):
        return (f"{path} holds pickled (object) arrays, which are never loaded because "
                "unpickling can run code")
    if isinstance(err, ValueError) and "pickle" in str(err):
        return (f"{path} is not an .npz archive: it is damaged, or a pickle, which is never "
                "loaded because unpickling can run code")
    return f"{path} is damaged or not a checkpoint ({type(err).__name__}: {err})"


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


def build_model(config, rng=None, dtype=np.float32):
    """The classifier a run of Config ``config`` selects checkpoints of (weights from
    ``rng``)."""
    if config.method == "ice-firevnet":
        return IceModel(3, depth=config.flow_depth, rng=rng, dtype=dtype)
    return Classifier(rng=rng, dtype=dtype, features_at=config.pair_features)


class SavedModel(NamedTuple):
    model: object               # in eval mode, on the CPU
    meta: dict                  # the record (module docstring)
    config: Config              # the run's (epochs left at their default)
    inputs: Callable            # uint8 images (N, 3, H, W) -> the model's x (3, H, W, N)



def check_record(meta):
    """ValueError naming what is missing unless ``meta`` has the form ``record`` writes, in
    the parts that load and evaluate read (module docstring)."""
    def fail(what):
        raise ValueError(what)
    number = (int, float)
    if not isinstance(meta, dict):
        fail("it is not a JSON object")
    settings = meta.get("settings")
    if not isinstance(settings, dict):
        fail("it has no settings")
    if meta.get("method") not in METHODS or settings.get("method") != meta["method"]:
        fail("it names no method of this code")
    for key in ("seed", "data_seed"):
        if not isinstance(settings.get(key), int):
            fail(f"its settings have no {key}")
    if meta["method"] == "ice-firevnet" and not isinstance(settings.get("flow_depth"), int):
        fail("its settings have no flow_depth")
    normalization = meta.get("normalization")
    if not (isinstance(normalization, dict) and all(
            isinstance(normalization.get(k), list) and len(normalization[k]) == 3
            and all(isinstance(v, number) for v in normalization[k]) for k in ("mean", "std"))):
        fail("it has no input normalization (3 means and 3 stds)")
    if not isinstance(meta.get("data"), dict):
        fail("it has no data record")
    selected = meta.get("selected")
    if selected is not None and not (
            isinstance(selected, dict) and isinstance(selected.get("epoch"), int)
            and all(isinstance(selected.get(k), number)
                    for k in ("val_digit_acc", "val_texture_acc"))):
        fail("its record of the selecting validation is incomplete")


def damaged(path, why):
    """SavedModelError: ``path``'s record is damaged (``why``), and how to get a whole file."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(os.path.join(folder, "checkpoint.npz")):
        fix = (f"rewrite it from the checkpoint beside it with: {command()} --out "
               f"{shlex.quote(folder)} --resume")
    else:
        fix = ("evaluate a whole copy (train.py --resume rewrites a run folder's best_*.npz "
               "from its checkpoint.npz)")
    return SavedModelError(f"{path}: its model record is damaged ({why}); {fix}")


def read_record(path, arrays):
    """(state, record, Config) of a loaded file: its own record, or its run folder's
    config.json."""
    try:
        state, meta = split_record(arrays)
    except ValueError as err:                   # not JSON
        raise damaged(path, f"not JSON: {err}") from None
    if meta is None:
        meta = record_from_config(path)
    try:
        check_record(meta)
        return state, meta, Config.from_json(meta["settings"])
    except (ValueError, TypeError) as err:
        raise damaged(path, err) from None


def record_from_config(path):
    """The record of a file written before records existed, from its run folder's config.json."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.exists(config_path):
        raise SavedModelError(f"{path} holds no model record and no config.json lies beside "
                              "it: evaluate a best_*.npz inside the run folder that wrote it")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        settings = Config.from_json(config["settings"]).to_json()
        data = config["data"]
        return {"format": 0, "method": settings["method"], "settings": settings,
                "normalization": {"mean": data["mean"], "std": data["std"]}, "data": data,
                "sources": config.get("sources"), "selected": None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SavedModelError(f"{path} holds no model record, and {config_path}, which gives "
                              f"it, is damaged ({type(err).__name__}: {err}); evaluate a file "
                              "of a whole run folder") from None


def load(path, xp=np):
    """The SavedModel in ``path`` (best_*.npz), its arrays on xp; SavedModelError if unusable."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise SavedModelError(f"{path} is a directory, not a file; give a best_digit.npz or "
                              "best_texture.npz")
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
    state, meta, config = read_record(path, arrays)
    model = build_model(config, rng=np.random.default_rng(0))
    model.to("gpu" if xp is not np else "cpu")
    try:
        load_state_into(model.state_dict(), state, path)
    except ValueError as err:
        raise SavedModelError(f"{err}; is it a file of this code's train.py?") from None
    if meta["method"] == "ice-firevnet":
        model.mark_initialized()
    model.eval()
    return SavedModel(model, meta, config, input_transform(meta, xp))


def input_transform(meta, xp):
    """uint8 images (N, 3, H, W) on xp -> the model's input x (module docstring)."""
    if meta["method"] == "ice-firevnet":
        return lambda images: dequantize(images, np.float32(0.5))
    mean, inv_std = normalization_arrays(meta["normalization"]["mean"],
                                         meta["normalization"]["std"], xp)
    return lambda images: normalize(images, mean, inv_std)
