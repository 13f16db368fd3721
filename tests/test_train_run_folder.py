"""train.py's run folder under failure: refused commands change nothing, no dead ends.

Every case ends in a one-line error with exit code 2 (or 3 for a NaN stop, 130
for an interrupt), never a traceback, and leaves a folder from which one
command named in the message goes on. The data are a small synthetic MNIST
and a folder of ten textures, so these tests need no downloads.
"""
import json
import os
import shutil
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiment import run as run_module
from experiment.methods import ClassifierMethod
from experiment.run import main
from fixtures_data import synthetic_mnist, write_mnist_dir

# 2 steps per epoch of 32 images, 100 images to evaluate (a small batch runs the same code
# as a large one)
QUICK = ["--limit-train", "64", "--limit-eval", "100", "--batch-size", "32", "--quiet"]
COLOURS = [(25 * i, 255 - 20 * i, (77 * i) % 256) for i in range(11)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    mnist = write_mnist_dir(root / "mnist", synthetic_mnist(n_train=500, n_test=200))
    return mnist, root


def write_textures(folder):
    """A new folder of ten plain-coloured 48 x 40 textures."""
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (48, 40), COLOURS[i]).save(folder / f"{i}.png")
    return folder


def trainer(mnist, textures, cache):
    """``run(out, *extra)``: train.py's main on these data with the QUICK settings;
    ``run.resume(out, *extra)`` resumes the run in ``out``. Both return the exit code."""
    cache = str(cache)

    def run(out, *extra):
        return main(["--out", str(out), "--cache-dir", cache, "--mnist-dir", str(mnist),
                     "--textures", str(textures)] + QUICK + list(extra))

    def resume(out, *extra):
        return main(["--out", str(out), "--resume", "--cache-dir", cache, "--quiet", *extra])

    run.resume = resume
    return run


@pytest.fixture
def textures(tmp_path):
    """A texture folder of its own for each test (some tests change a texture)."""
    return write_textures(tmp_path / "textures")


@pytest.fixture
def train(sources, textures, tmp_path):
    """``trainer`` on the module's synthetic MNIST, the test's textures and a cache of its own."""
    mnist, _ = sources
    return trainer(mnist, textures, tmp_path / "cache")


def train_once(tmp_path_factory, sources, *flags):
    """(folder, train): a finished run with these flags (and QUICK) in a new folder, and the
    ``trainer`` that made it, on textures of the same colours as ``textures`` and a cache of
    its own, which the run's config.json names. For module-scoped fixtures whose tests read
    the run, or change a copy of it (``copy_run``) and resume that with ``train.resume``."""
    root = tmp_path_factory.mktemp("run")
    train = trainer(sources[0], write_textures(root / "textures"), root / "cache")
    assert train(root / "run", *flags) == 0
    return root / "run", train


def copy_run(run, folder):
    """A copy of the run folder ``run`` at ``folder``, for a test to change, move or delete."""
    return Path(shutil.copytree(run, folder))


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, sources):
    """``train_once`` of a one-epoch baseline run, for the module; tests take ``one_epoch``."""
    return train_once(tmp_path_factory, sources, "--epochs", "1")


@pytest.fixture
def one_epoch(one_epoch_run, tmp_path):
    """(folder, train): tmp_path / "r", a copy of the module's one-epoch run for the test to
    change, and the trainer that made the run, whose ``train.resume(folder)`` resumes the
    copy from the data, textures and cache that its config.json names, as it would the run."""
    run, train = one_epoch_run
    return copy_run(run, tmp_path / "r"), train


@pytest.fixture(scope="module")
def straight(tmp_path_factory, sources):
    """An uninterrupted two-epoch baseline run, for interrupted ones to match (read only)."""
    folder, _ = train_once(tmp_path_factory, sources, "--epochs", "2")
    return folder


def read_state(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "progress_json"}


def assert_same_state(a, b, best_models=True):
    """Checkpoints a and b hold equal arrays (the best models' copies too, if asked)."""
    a, b = read_state(a), read_state(b)
    if not best_models:
        a, b = ({k: v for k, v in d.items() if not k.startswith("best_")} for d in (a, b))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class Killed(Exception):
    """Stands in for kill -9: the run ends at once, no handler of train.py runs."""


def kill_at(monkeypatch, at_epoch, at_step):
    original = ClassifierMethod.train_step

    def step(self, index, epoch, step):
        if (epoch, step) == (at_epoch, at_step):
            raise Killed
        return original(self, index, epoch, step)

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    return lambda: monkeypatch.setattr(ClassifierMethod, "train_step", original)


def one_line_error(capsys, code_words):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1, err
    for words in code_words:
        assert words in lines[0], lines[0]
    return lines[0]


# --- flags ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--seed", "-1"], "--seed"),
    (["--data-seed", "-1"], "--data-seed"),
    (["--resume", "--restart"], "not allowed with"),
    (["--allow-data-change"], "only makes sense with --resume"),
])
def test_bad_flags_are_refused_before_the_folder_is_made(tmp_path, argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "r")] + argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_help_names_every_cache_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "$IFM_CACHE_DIR, else $XDG_CACHE_HOME/ifm, else ~/.cache/ifm" in help_text


# --- dead-end folders -------------------------------------------------------------------------

def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_beginning(
        tmp_path, train, straight, monkeypatch, capsys):
    restore = kill_at(monkeypatch, 1, 1)
    with pytest.raises(Killed):
        train(tmp_path / "cut", "--epochs", "2")
    restore()
    assert (tmp_path / "cut" / "config.json").exists()
    assert not (tmp_path / "cut" / "checkpoint.npz").exists()
    # A new run there names both ways on; --resume starts the saved run from the beginning.
    assert train(tmp_path / "cut", "--epochs", "2") == 2
    one_line_error(capsys, ["stopped before its first checkpoint", "--resume", "--restart"])
    assert train.resume(tmp_path / "cut") == 0
    assert "from the beginning" in capsys.readouterr().err
    assert_same_state(straight / "checkpoint.npz", tmp_path / "cut" / "checkpoint.npz")
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert [r["from"] for r in config["resumed"]] == ["the beginning (no checkpoint)"]


def test_restart_clears_the_run_and_starts_anew(tmp_path, train, capsys):
    folder = tmp_path / "r"
    assert train(folder, "--epochs", "1") == 0
    (folder / "notes.txt").write_text("mine")
    (folder / "checkpoint.npz.tmp-123").write_bytes(b"left over")
    assert train(folder, "--epochs", "1", "--lr", "0.02") == 2
    assert train(folder, "--epochs", "1", "--lr", "0.02", "--restart") == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["settings"]["lr"] == 0.02 and "resumed" not in config
    assert (folder / "notes.txt").read_text() == "mine"          # not a run file: kept
    assert not (folder / "checkpoint.npz.tmp-123").exists()


def test_a_nan_stop_in_epoch_1_says_no_checkpoint_was_written(tmp_path, train, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(tmp_path / "r", "--epochs", "1", "--lr", "1e30", "--cpu-cores", "2") == 3
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    line = one_line_error(capsys, ["epoch 1, step", "NaN", "--restart"])
    assert "kept" not in line and "before its first checkpoint" in line
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_a_nan_stop_after_a_checkpoint_says_it_is_kept(tmp_path, train, monkeypatch, capsys):
    original = ClassifierMethod.train_step

    def step(self, index, epoch, step):
        result = original(self, index, epoch, step)
        return result._replace(total=result.total * np.nan) if epoch == 2 else result

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    assert train(tmp_path / "r", "--epochs", "2") == 3
    one_line_error(capsys, ["epoch 2, step 1", "last checkpoint before it is kept"])


# --- interrupts -------------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [1, 2])
def test_a_second_interrupt_stops_at_once_without_a_traceback(tmp_path, train, straight,
                                                             monkeypatch, capsys, epoch):
    original = ClassifierMethod.train_step

    def step(self, index, e, s):
        if (e, s) == (epoch, 1):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, index, e, s)

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    assert train(tmp_path / "r", "--epochs", "2") == 130
    line = one_line_error(capsys, ["second interrupt", "--resume"])
    assert ("intact" in line) == (epoch == 2)
    monkeypatch.setattr(ClassifierMethod, "train_step", original)
    assert not list((tmp_path / "r").glob("*.tmp-*"))
    assert train.resume(tmp_path / "r") == 0
    assert_same_state(straight / "checkpoint.npz", tmp_path / "r" / "checkpoint.npz")


# --- damaged checkpoints, and refused resumes change nothing ----------------------------------

def without_progress(path):
    arrays = read_state(path)
    np.savez(path, **arrays)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
    "pickled": lambda p: np.savez(p, weights=np.array([{"a": 1}], dtype=object)),
    "no-progress": without_progress,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_a_clear_error_and_changes_nothing(one_epoch, capsys, damage):
    folder, train = one_epoch
    DAMAGE[damage](folder / "checkpoint.npz")
    before = (folder / "config.json").read_bytes()
    assert train.resume(folder, "--epochs", "2") == 2
    line = one_line_error(capsys, ["checkpoint.npz", "--restart"])
    assert "allow_pickle" not in line
    assert ("holds pickled (object) arrays" in line) == (damage == "pickled")
    assert ("is not an .npz archive" in line) == (damage == "random")
    assert (folder / "config.json").read_bytes() == before


def test_a_damaged_config_is_a_clear_error(one_epoch, capsys):
    folder, train = one_epoch
    (folder / "config.json").write_text("{not json")
    assert train.resume(folder) == 2
    one_line_error(capsys, ["config.json", "--restart"])


def test_resume_refuses_fewer_epochs_other_cores_or_device(tmp_path, train, capsys):
    folder = tmp_path / "r"
    assert train(folder, "--epochs", "2", "--cpu-cores", "2") == 0
    before = (folder / "config.json").read_bytes()
    for flags, words in ((["--epochs", "1"], "may add epochs, not remove them"),
                         (["--cpu-cores", "1"], "--cpu-cores 1 (the run has 2)"),
                         (["--device", "gpu"], "--device 'gpu' (the run has 'cpu')"),
                         (["--lr", "0.5"], "--lr 0.5 (the run has 0.01)")):
        assert train.resume(folder, *flags) == 2
        one_line_error(capsys, [words])
        assert (folder / "config.json").read_bytes() == before
    config = json.loads(before)
    assert config["settings"]["epochs"] == 2


def test_resume_keeps_the_runs_core_count(tmp_path, train, monkeypatch):
    folder = tmp_path / "r"
    restore = kill_at(monkeypatch, 2, 1)
    with pytest.raises(Killed):
        train(folder, "--epochs", "2", "--cpu-cores", "1")
    restore()
    assert train.resume(folder) == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["cpu_cores"] == 1 and config["resumed"][0]["cpu_cores"] == 1


# --- the data changed between a run and its resume --------------------------------------------

def test_resume_refuses_changed_data_unless_allowed(tmp_path, train, textures, capsys):
    folder = tmp_path / "r"
    assert train(folder, "--epochs", "1") == 0
    Image.new("RGB", (48, 40), COLOURS[10]).save(textures / "3.png")
    before = (folder / "config.json").read_bytes()
    assert train.resume(folder, "--epochs", "2") == 2
    one_line_error(capsys, ["data differ", "texture 3 (3.png -> 3.png", "--allow-data-change"])
    assert (folder / "config.json").read_bytes() == before
    assert train.resume(folder, "--epochs", "2", "--allow-data-change") == 0
    config = json.loads((folder / "config.json").read_text())
    entry = config["resumed"][0]
    assert entry["data_changed"] == ["texture 3 (3.png -> 3.png: other pixels)"]
    old = json.loads(before)["data"]
    assert entry["data_before"] == old and config["data"]["cache_key"] != old["cache_key"]


# --- read-only places -------------------------------------------------------------------------

def test_a_read_only_out_folder_is_a_clear_error(tmp_path, train, read_only, capsys):
    read_only(tmp_path / "ro")
    assert train(tmp_path / "ro" / "r", "--epochs", "1") == 2
    one_line_error(capsys, [str(tmp_path / "ro" / "r"), "Read-only file system", "--out"])


def test_a_read_only_file_system_mid_run_is_a_clear_error(tmp_path, train, read_only,
                                                        monkeypatch, capsys):
    original = ClassifierMethod.train_step

    def step(self, index, epoch, step):
        if (epoch, step) == (1, 1):
            read_only(tmp_path / "r")
        return original(self, index, epoch, step)

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    assert train(tmp_path / "r", "--epochs", "1") == 2
    one_line_error(capsys, ["Read-only file system"])


def test_a_read_only_cache_with_nothing_local_is_a_clear_error(tmp_path, textures, read_only,
                                                             monkeypatch, capsys):
    monkeypatch.delenv("IFM_MNIST_DIR", raising=False)
    read_only(tmp_path / "cache")
    assert main(["--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache"),
                 "--textures", str(textures)] + QUICK) == 2
    one_line_error(capsys, ["cannot write there", "--cache-dir"])
    assert not (tmp_path / "r").exists()


# --- what a run records -----------------------------------------------------------------------

def test_a_one_epoch_report_says_epoch(one_epoch):
    folder, _ = one_epoch
    report = (folder / "report.md").read_text()
    assert "1 epoch," in report and "1 epochs" not in report


# --- validation within epochs, init and crop options ------------------------------------------

def test_eval_every_validates_within_epochs_and_leaves_training_alone(tmp_path, train):
    import csv
    assert train(tmp_path / "plain", "--epochs", "2", "--ifm", "--samples", "4") == 0
    assert train(tmp_path / "often", "--epochs", "2", "--ifm", "--samples", "4",
                 "--eval-every", "1") == 0
    assert_same_state(tmp_path / "plain" / "checkpoint.npz", tmp_path / "often" / "checkpoint.npz",
                      best_models=False)      # the chosen models differ; training does not
    with open(tmp_path / "often" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    report = json.loads((tmp_path / "often" / "report.json").read_text())
    best = max(rows, key=lambda r: float(r["val_digit_acc"]))       # first maximum wins
    chosen = report["rows"]["best_digit"]
    assert (chosen["epoch"], chosen["step"]) == (int(best["epoch"]), int(best["step"]))
    assert chosen["val_digit_acc"] == pytest.approx(float(best["val_digit_acc"]))
    assert not (tmp_path / "plain" / "evaluations.csv").exists()


def test_wrapped_texture_crops_are_recorded(tmp_path, train):
    assert train(tmp_path / "w", "--epochs", "1", "--texture-crops", "wrap") == 0
    assert train(tmp_path / "i", "--epochs", "1") == 0
    wrap, inside = (json.loads((tmp_path / n / "config.json").read_text()) for n in "wi")
    assert wrap["settings"]["texture_crops"] == "wrap"
    assert wrap["data"]["rendering"]["crops"] == "wrap"
    assert wrap["data"]["cache_key"] != inside["data"]["cache_key"]


# --- what a resume may change, and where its data come from ------------------------------------

def test_resume_refuses_flags_the_run_left_unset(one_epoch, capsys):
    folder, train = one_epoch
    for flags, words in ((["--eval-every", "2"], "--eval-every 2 (the run has None)"),
                         (["--limit-train", "32"], "--limit-train 32 (the run has 64)")):
        assert train.resume(folder, "--epochs", "2", *flags) == 2
        one_line_error(capsys, [words])


def test_a_run_from_environment_variables_resumes_without_them(tmp_path, sources, textures,
                                                               monkeypatch, capsys):
    mnist, _ = sources
    monkeypatch.setenv("IFM_MNIST_DIR", str(mnist))
    monkeypatch.setenv("IFM_TEXTURES", str(textures))
    monkeypatch.setenv("IFM_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "r"
    assert main(["--out", str(folder), "--epochs", "1"] + QUICK) == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["settings"]["textures"] is None            # as typed: nothing
    assert config["sources"] == {"mnist_dir": str(mnist), "textures": str(textures),
                                 "cache_dir": str(tmp_path / "cache")}
    for name in ("IFM_MNIST_DIR", "IFM_TEXTURES", "IFM_CACHE_DIR"):
        monkeypatch.delenv(name)
    assert main(["--out", str(folder), "--resume", "--epochs", "2", "--quiet"]) == 0
    # The locations may be given anew (the content is checked, not the path).
    copy = tmp_path / "textures-copy"
    copy.mkdir()
    for f in textures.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert main(["--out", str(folder), "--resume", "--epochs", "3", "--quiet",
                 "--textures", str(copy)]) == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["sources"]["textures"] == str(copy)
    assert config["resumed"][-1]["sources_before"]["textures"] == str(textures)


def test_a_gpu_run_without_a_gpu_says_where_it_can_continue(one_epoch, capsys):
    from nn import backend
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    folder, train = one_epoch
    config = json.loads((folder / "config.json").read_text())
    config["device"] = "gpu"
    (folder / "config.json").write_text(json.dumps(config))
    assert train.resume(folder, "--epochs", "2") == 2
    line = one_line_error(capsys, ["made on the GPU", "--restart"])
    assert "--device cpu" not in line


def test_an_out_that_is_a_file_is_refused(tmp_path, train, capsys):
    (tmp_path / "file").write_text("x")
    assert train(tmp_path / "file", "--epochs", "1") == 2
    one_line_error(capsys, ["is a file, not a folder"])


# --- checkpoints that are npz files but not a run's -------------------------------------------

def rewrite_checkpoint(path, change):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(path, **arrays)


def set_progress(**values):
    def change(arrays):
        progress = json.loads(str(arrays["progress_json"]))
        progress.update(values)
        arrays["progress_json"] = np.array(json.dumps(progress))
    return change


@pytest.mark.parametrize("change, words", [
    (lambda a: a.update(progress_json=np.array("5")), "not a JSON object"),
    (set_progress(epoch_done="x"), "epoch_done"),
    (set_progress(best=None), "best record"),
    (set_progress(partial={"next_step": 1}), "mid-epoch record"),
    (lambda a: [a.pop(k) for k in list(a) if k.startswith("opt/")], "optimizer state: missing"),
    (lambda a: a.update({"opt/bogus/x": np.zeros(1)}), "unexpected"),
], ids=["progress-5", "epoch-x", "best-null", "partial", "no-optimizer", "extra-entry"])
def test_a_checkpoint_of_the_wrong_form_is_refused(one_epoch, capsys, change, words):
    folder, train = one_epoch
    rewrite_checkpoint(folder / "checkpoint.npz", change)
    before = (folder / "config.json").read_bytes()
    assert train.resume(folder, "--epochs", "2") == 2
    one_line_error(capsys, ["checkpoint.npz", words])
    assert (folder / "config.json").read_bytes() == before


# --- interrupts and kills at the edges --------------------------------------------------------

def test_an_interrupt_during_the_report_says_training_is_complete(tmp_path, train, monkeypatch,
                                                                 capsys):
    original = run_module.Trainer.evaluate

    def evaluate(self, split, **kwargs):
        if split is self.test_data:
            raise KeyboardInterrupt
        return original(self, split, **kwargs)

    monkeypatch.setattr(run_module.Trainer, "evaluate", evaluate)
    assert train(tmp_path / "r", "--epochs", "1") == 130
    one_line_error(capsys, ["training is complete", "--resume"])
    monkeypatch.setattr(run_module.Trainer, "evaluate", original)
    assert train.resume(tmp_path / "r") == 0
    assert (tmp_path / "r" / "report.json").exists()


def test_an_interrupt_in_an_epochs_last_step_stops_after_that_epoch(tmp_path, train,
                                                                   monkeypatch, capsys):
    original = ClassifierMethod.train_step

    def step(self, index, epoch, s):
        if (epoch, s) == (1, 1):                    # the last of 2 steps
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, index, epoch, s)

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    assert train(tmp_path / "r", "--epochs", "2") == 130
    assert "end of epoch 1" in capsys.readouterr().err
    progress = json.loads(str(np.load(tmp_path / "r" / "checkpoint.npz")["progress_json"]))
    assert progress["epoch_done"] == 1 and progress["partial"] is None


def test_a_resume_that_adds_epochs_removes_the_old_report(one_epoch, monkeypatch):
    folder, train = one_epoch
    restore = kill_at(monkeypatch, 2, 1)
    with pytest.raises(Killed):
        train.resume(folder, "--epochs", "3")
    restore()
    assert not (folder / "report.json").exists() and not (folder / "report.md").exists()


def test_a_resume_restores_the_best_models_its_checkpoint_knows(tmp_path, train, monkeypatch):
    folder = tmp_path / "r"
    assert train(folder, "--epochs", "1", "--eval-every", "1") == 0
    kept = read_state(folder / "best_digit.npz")
    # As if a better model had been saved after the checkpoint, then lost to a kill -9.
    np.savez(folder / "best_digit.npz", **{k: v if k == "model_json" else v + 1
                                            for k, v in kept.items()})
    restore = kill_at(monkeypatch, 2, 0)
    with pytest.raises(Killed):
        train.resume(folder, "--epochs", "2")
    restore()
    restored = read_state(folder / "best_digit.npz")
    for k in kept:
        np.testing.assert_array_equal(restored[k], kept[k], err_msg=k)


def test_an_interrupted_checkpoint_write_leaves_the_old_one_whole(one_epoch, monkeypatch, capsys):
    folder, train = one_epoch
    before = (folder / "checkpoint.npz").read_bytes()
    import nn.serialization

    def savez_then_interrupt(f, **arrays):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(nn.serialization.np, "savez", savez_then_interrupt)
    assert train.resume(folder, "--epochs", "2") == 130
    assert "second interrupt" in capsys.readouterr().err
    assert (folder / "checkpoint.npz").read_bytes() == before
    assert not list(folder.glob("*.tmp-*"))
