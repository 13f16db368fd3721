"""End-to-end tests of train.py and aggregate.py on a small subset (CPU).

They need the real MNIST files and a texture folder, found through
IFM_MNIST_DIR and IFM_TEXTURES (CI sets both); without them they skip.
"""
import csv
import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scripts import aggregate
from experiment.methods import ClassifierMethod
from experiment.run import main

MNIST = os.environ.get("IFM_MNIST_DIR")
TEXTURES = os.environ.get("IFM_TEXTURES")
needs_data = pytest.mark.skipif(not (MNIST and TEXTURES),
                                reason="set IFM_MNIST_DIR and IFM_TEXTURES to run end-to-end tests")

# 4 steps per epoch of 32 images, 100 images to evaluate: small batches and evaluations
# run the same code as large ones
QUICK = ["--limit-train", "128", "--limit-eval", "100", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def train(out, cache_dir, *extra):
    argv = ["--out", str(out), "--cache-dir", cache_dir, "--mnist-dir", MNIST,
            "--textures", TEXTURES] + QUICK + list(extra)
    return main(argv)


def read_state(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


RESUMED = ["--epochs", "2", "--ifm", "--samples", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache_dir):
    """The uninterrupted run (RESUMED) that each interrupted and resumed one must match;
    trained once for the module, read only."""
    folder = tmp_path_factory.mktemp("straight") / "run"
    assert train(folder, cache_dir, *RESUMED) == 0
    return folder


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, cache_dir):
    """A one-epoch baseline run, trained once for the module; tests take ``one_epoch``."""
    folder = tmp_path_factory.mktemp("one_epoch") / "run"
    assert train(folder, cache_dir, "--epochs", "1") == 0
    return folder


@pytest.fixture
def one_epoch(one_epoch_run, tmp_path):
    """tmp_path / "r": a copy of the module's one-epoch run, for the test to change; the
    run ``train(tmp_path / "r", cache_dir, "--epochs", "1")`` makes (same data and cache)."""
    return Path(shutil.copytree(one_epoch_run, tmp_path / "r"))


@needs_data
@pytest.mark.parametrize("method", ["baseline", "ifm"])
def test_smoke_run_writes_the_run_folder(tmp_path, cache_dir, method, capsys):
    extra = ["--epochs", "2"] + (["--ifm", "--samples", "8", "--cpu-cores", "2"]
                                 if method == "ifm" else [])
    assert train(tmp_path / "run", cache_dir, *extra) == 0
    run = tmp_path / "run"
    for name in ("config.json", "history.csv", "best_digit.npz", "best_texture.npz",
                 "checkpoint.npz", "report.json", "report.md"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == method
    assert set(report["rows"]) == {"best_digit", "best_texture"}
    for row in report["rows"].values():
        assert set(row) == {"epoch", "step", "val_digit_acc", "val_texture_acc",
                            "test_digit_acc", "test_texture_acc"}
        assert row["step"] == report["steps_per_epoch"] == 4     # epoch ends only
        assert row["epoch"] in (1, 2)
        for key in ("val_digit_acc", "val_texture_acc", "test_digit_acc", "test_texture_acc"):
            assert 0.0 <= row[key] <= 1.0
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    if method == "ifm":
        assert {"F_1_2", "F_2_3", "F_3_4"} <= set(rows[0])
        assert all(np.isfinite(float(r["F_1_2"])) for r in rows)
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["ifm"] == (method == "ifm")
    assert config["data"]  # provenance recorded
    if method == "ifm":
        assert config["cpu_cores"] == 2     # speed only, recorded beside the settings
        assert "cpu_cores" not in config["settings"]
    best = read_state(run / "best_digit.npz")
    assert not any(k.startswith("ifm") for k in best), "a saved classifier holds no D"
    out = capsys.readouterr().out
    assert "Ours_digit" in out if method == "ifm" else "Baseline_digit" in out


@needs_data
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_resume_reaches_the_same_parameters(tmp_path, cache_dir, straight, monkeypatch, signum):
    # A real Ctrl-C (SIGINT) or SIGTERM during step 1 of epoch 2: the step
    # finishes, the run saves a checkpoint before step 2 and exits with 128 + the signal's
    # number: 130 for SIGINT, 143 for SIGTERM.
    original = ClassifierMethod.train_step

    def interrupting_step(self, index, epoch, step):
        if epoch == 2 and step == 1:
            os.kill(os.getpid(), signum)
        return original(self, index, epoch, step)

    monkeypatch.setattr(ClassifierMethod, "train_step", interrupting_step)
    assert train(tmp_path / "cut", cache_dir, *RESUMED) == 128 + signum
    monkeypatch.setattr(ClassifierMethod, "train_step", original)
    assert main(["--out", str(tmp_path / "cut"), "--resume", "--cache-dir", cache_dir,
                 "--quiet"]) == 0
    a = read_state(straight / "checkpoint.npz")
    b = read_state(tmp_path / "cut" / "checkpoint.npz")
    a.pop("progress_json"), b.pop("progress_json")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ra = json.loads((straight / "report.json").read_text())
    rb = json.loads((tmp_path / "cut" / "report.json").read_text())
    assert ra == rb


@needs_data
def test_resume_can_extend_epochs_and_refuses_changed_settings(one_epoch, cache_dir, capsys):
    assert main(["--out", str(one_epoch), "--resume", "--lr", "0.5",
                 "--cache-dir", cache_dir]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(["--out", str(one_epoch), "--resume", "--epochs", "2", "--quiet",
                 "--cache-dir", cache_dir]) == 0
    with open(one_epoch / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


@needs_data
def test_post_pool_pairing_runs_and_old_runs_resume_as_pre_pool(tmp_path, cache_dir):
    assert train(tmp_path / "post", cache_dir, "--epochs", "1", "--ifm", "--samples", "4",
                 "--pair-features", "post-pool") == 0
    config = json.loads((tmp_path / "post" / "config.json").read_text())
    assert config["settings"]["pair_features"] == "post-pool"
    # A run saved before the setting existed resumes with the pre-pool pairing it used.
    assert train(tmp_path / "old", cache_dir, "--epochs", "1", "--ifm", "--samples", "4") == 0
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["settings"]["pair_features"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert main(["--out", str(tmp_path / "old"), "--resume", "--epochs", "2", "--quiet",
                 "--cache-dir", cache_dir]) == 0
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert config["settings"]["pair_features"] == "pre-pool"


@needs_data
def test_existing_run_folder_is_not_overwritten(one_epoch, cache_dir, capsys):
    assert train(one_epoch, cache_dir, "--epochs", "1") == 2
    assert "--resume" in capsys.readouterr().err


@needs_data
def test_nan_loss_stops_with_epoch_and_step(tmp_path, cache_dir, capsys):
    code = train(tmp_path / "r", cache_dir, "--epochs", "1", "--lr", "1e30")
    err = capsys.readouterr().err
    assert code == 3
    assert "epoch 1, step" in err and "NaN" in err


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--epochs", "0"], "--epochs"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--batch-size", "1.5"], "--batch-size"),
    (["--device", "tpu"], "--device"),
    (["--cpu-cores", "0"], "--cpu-cores"),
    (["--ifm", "--samples", "zero"], "--samples"),
    (["--ifm", "--pairs", "1-3"], "adjacent"),
    (["--lam", "3"], "only make sense with --ifm"),
    (["--pair-features", "post-pool"], "only make sense with --ifm"),
    (["--ifm", "--pair-features", "mid"], "--pair-features"),
    (["--ifm", "--estimator", "kl"], "--estimator"),
])
def test_bad_flags_are_rejected(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_gpu_without_cupy_says_so(tmp_path, capsys, monkeypatch):
    from nn import backend
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    assert main(["--device", "gpu", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "--device gpu" in err and ("CuPy" in err or "CUDA" in err)


class CupyWithoutCurand:
    """A CuPy that sees a device but cannot load cuRAND: cupy-cuda12x on a machine with only
    a driver and no nvidia-curand-cu12. The ImportError is CuPy 14's, from cupy.cuda.curand."""

    class cuda:
        runtime = SimpleNamespace(getDeviceCount=lambda: 1)

        @property
        def curand(self):
            raise ImportError('Failure finding "libcurand.so.11 or libcurand.so.10": No such '
                              'file: libcurand.so.11 or libcurand.so.10, No such file: '
                              'libcurand.so.11 or libcurand.so.10\n')

    cuda = cuda()


def test_gpu_without_curand_says_what_to_install(tmp_path, capsys, monkeypatch):
    from nn import backend
    from nn.random import SeededUniform
    monkeypatch.setattr(backend, "_cupy", CupyWithoutCurand())
    out = tmp_path / "g"
    assert main(["--device", "gpu", "--out", str(out), "--textures", "procedural"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith('train.py: error: --device gpu: CuPy cannot load cuRAND (Failure '
                          'finding "libcurand.so.11 or libcurand.so.10": No such file')
    assert "install it with `python3 -m pip install nvidia-curand-cu12`" in err
    assert 'python3 -m pip install "cupy-cuda12x[ctk]"' in err and "--device cpu" in err
    assert not out.exists()
    with pytest.raises(RuntimeError, match="pip install nvidia-curand-cu12"):  # a library user
        SeededUniform()(0, (4,), CupyWithoutCurand())


def test_missing_mnist_is_a_clear_error(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["--out", str(tmp_path / "r"), "--mnist-dir", str(empty), "--textures",
                 "procedural", "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert str(empty) in capsys.readouterr().err


def _fake_run(folder, method, digit, texture):
    folder.mkdir()
    rows = {which: {"epoch": 1, "val_digit_acc": 0.5, "val_texture_acc": 0.5,
                    "test_digit_acc": d, "test_texture_acc": t}
            for which, d, t in (("best_digit", digit, texture), ("best_texture", digit / 2, texture))}
    (folder / "report.json").write_text(json.dumps({"method": method, "rows": rows}))
    (folder / "config.json").write_text(json.dumps({"settings": {"epochs": 4}, "device": "cpu"}))


def test_aggregate_two_runs(tmp_path, capsys):
    _fake_run(tmp_path / "a", "ifm", 0.40, 0.60)
    _fake_run(tmp_path / "b", "ifm", 0.50, 0.40)
    _fake_run(tmp_path / "c", "baseline", 0.12, 0.95)
    out_json = tmp_path / "t.json"
    assert aggregate.main([str(tmp_path / n) for n in "abc"] + ["--json", str(out_json)]) == 0
    md = capsys.readouterr().out
    assert "| Ours_digit | 2 | 45.0 ± 7.1 | 50.0 ± 14.1 |" in md
    assert "| Baseline_digit | 1 | 12.0 | 95.0 |" in md
    table = json.loads(out_json.read_text())
    assert table["epochs"] == 4 and table["device"] == "cpu"
    row = table["rows"]["Ours_digit"]
    assert row["runs"] == 2
    assert row["test_digit_acc"] == pytest.approx(0.45)
    assert row["test_digit_std"] == pytest.approx(np.std([0.4, 0.5], ddof=1))
    assert table["rows"]["Ours_texture"]["test_digit_acc"] == pytest.approx(0.225)
    assert table["rows"]["Baseline_digit"]["test_digit_std"] is None   # one run: undefined


def test_aggregate_names_a_folder_without_report(tmp_path):
    with pytest.raises(SystemExit) as exc:
        aggregate.main([str(tmp_path)])
    assert "report.json" in str(exc.value)


def test_accumulator_names_the_first_non_finite_step():
    from experiment.trainer import EpochAccumulator, NonFiniteLoss
    from training import StepResult
    acc = EpochAccumulator(np, 1)
    for step, total in enumerate([1.0, 2.0, np.nan, np.inf, 3.0]):
        acc.add(step, 4, StepResult(np.float32(0.5), np.int64(3), [np.float64(-0.1)],
                                    np.float32(total)))
    with pytest.raises(NonFiniteLoss, match="epoch 7, step 3$"):
        acc.check_finite(7)
    clean = EpochAccumulator(np, 0)
    clean.add(0, 4, StepResult(np.float32(0.5), np.int64(3), [], np.float32(1.0)))
    clean.check_finite(1)
    assert clean.mean_loss() == pytest.approx(0.5)
