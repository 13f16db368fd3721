"""The CuPy stand-in and the library's GPU path against the real CuPy API, without a GPU.

Real CuPy imports on a machine with no GPU (``pip install cupy-cuda12x``; device calls
raise CUDARuntimeError). Where it imports, these check:
- every name the stand-in (tests/cupy_standin.py) provides exists in real CuPy;
- every cupy/cupyx entry point that training steps, evaluation and checkpointing call
  (recorded on the stand-in over several configurations) exists in real CuPy, and
  accepts the keyword arguments the code passes where ``inspect.signature`` can tell
  (CuPy's ufuncs and Cython methods often have no signature: those are counted);
- with no device, ``train.py --device gpu`` is refused with one line that says so.
Elsewhere they skip; with IFM_REQUIRE_CUPY=1 a missing CuPy fails them instead. CI
installs the wheel (and cuRAND's, for cupy.cuda.curand) to run them: .ci/run.
"""
import inspect
import os
import sys

import numpy as np
import pytest

import cupy_standin
from nn import backend
from test_train_gpu_parity import config, tiny_dataset

if os.environ.get("IFM_REQUIRE_CUPY") == "1":       # CI: fail, never skip
    import cupy as real
else:
    real = pytest.importorskip("cupy", reason="CuPy is not installed")
if cupy_standin.is_standin(real):
    pytest.skip("cupy is the stand-in here (IFM_CUPY_STANDIN=1), not real CuPy",
                allow_module_level=True)
import cupyx  # noqa: E402  (real CuPy's)

REAL_ROOTS = {"cupy": real, "cupyx": cupyx}


def resolve(name):
    """The real object for a stand-in API name ("cupy.ndarray.sum", "cupy.add.at", ...)."""
    name = name.split(" (", 1)[0]           # "cupy.ndarray.__iter__ (element)"
    root, *path = name.split(".")
    obj = REAL_ROOTS[root]
    for part in path:
        obj = getattr(obj, part)
    return obj


def provided_names():
    """Every public name the stand-in's modules and classes provide, as "cupy.x.y"."""
    names = []
    for module_name, module in cupy_standin.MODULES.items():
        for attr in dir(module):
            if attr.startswith("_"):
                continue
            names.append(f"{module_name}.{attr}")
            value = getattr(module, attr)
            if isinstance(value, type) and value.__module__ == cupy_standin.__name__:
                names += [f"{module_name}.{attr}.{m}" for m in vars(value)
                          if not m.startswith("_")]
    names += [f"cupy.ndarray.{m}" for m in vars(cupy_standin.ndarray)
              if m.startswith("__") and m.endswith("__") and m not in (
                  "__module__", "__doc__", "__slots__", "__weakref__", "__dict__", "__hash__",
                  "__array_ufunc__", "__array_function__", "__array__", "__init__")]
    return sorted(set(names))


def test_every_name_the_standin_provides_exists_in_real_cupy():
    missing = []
    for name in provided_names():
        try:
            resolve(name)
        except AttributeError:
            missing.append(name)
    assert not missing, f"the stand-in provides names real CuPy {real.__version__} lacks: " \
                        f"{missing}"


def recorded_calls():
    """{API name: keyword arguments passed} of training steps, evaluation and a checkpoint
    on the stand-in: the main configuration and its variants, iCE, every estimator."""
    from experiment.trainer import Trainer
    from nn.serialization import state_to_numpy
    variants = [{}, {"method": "baseline"}, {"upsample": "bilinear"},
                {"marginal": "batch", "samples": "all"},
                {"pair_features": "post-pool", "optimizer": "adam"},
                *[{"estimator": e} for e in ("dv", "infonce", "paper-eq4")],
                *[{"method": "ice-firevnet", "flow_depth": 2, "ice_labels": labels}
                  for labels in ("true", "shuffled")]]
    with cupy_standin.installed(), cupy_standin.counting() as counts:
        for changes in variants:
            trainer = Trainer(config(**changes), tiny_dataset(np.random.default_rng(0)), "gpu")
            order = trainer.plan.epoch_order(1)
            for step in range(2):
                trainer.method.train_step(trainer.plan.batch_index(order, step), 1, step)
            trainer.evaluate(trainer.val_data)
            state_to_numpy(trainer.checkpoint_arrays())
    return counts.keywords


def keywords_accepted(obj, keywords):
    """(the keywords ``obj`` refuses, or None where its signature cannot be read)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    parameters = signature.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return set()
    return set(keywords) - {p.name for p in parameters}


def test_every_entry_point_the_library_calls_exists_with_its_keywords(capsys):
    calls = recorded_calls()
    assert len(calls) > 50                  # the recording reached the GPU path
    missing, refused, unreadable = [], {}, []
    for name, keywords in sorted(calls.items()):
        try:
            obj = resolve(name)
        except AttributeError:
            missing.append(name)
            continue
        if keywords:
            bad = keywords_accepted(obj, keywords)
            if bad is None:
                unreadable.append(name)
            elif bad:
                refused[name] = sorted(bad)
    with capsys.disabled():
        print(f"\nreal CuPy {real.__version__}: {len(calls)} entry points called, "
              f"{sum(bool(k) for k in calls.values())} with keywords, of which "
              f"{len(unreadable)} have no readable signature: {unreadable}")
    assert not missing, f"called, but not in real CuPy {real.__version__}: {missing}"
    assert not refused, f"keywords real CuPy does not take: {refused}"


def test_without_a_device_gpu_is_refused_in_one_line(tmp_path, capsys):
    if backend.gpu_available():
        pytest.skip("this machine has a CUDA device")
    from experiment.run import main
    out = tmp_path / "run"
    assert main(["--device", "gpu", "--out", str(out), "--textures", "procedural"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device gpu" in err
    assert "CuPy is installed but sees no CUDA device" in err and "--device cpu" in err
    assert not out.exists()
    assert "cupy" in sys.modules and not cupy_standin.is_standin(sys.modules["cupy"])
