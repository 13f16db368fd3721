"""What a new user hits first: using a trained model (evaluate.py), commands that must not
take or change what is committed, and inputs refused with one line.

The data are the synthetic MNIST and texture folder of test_train_run_folder.py.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_run_folder import sources, textures, train  # noqa: F401 (fixtures)
from test_train_run_folder import copy_run, train_once

from experiment import run as run_module
from experiment.methods import ClassifierMethod
from experiment.evaluate import main as evaluate
from experiment.run import main
from experiment.runfolder import take_lock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, sources):         # noqa: F811
    """A finished two-epoch IFM run (K = 8), trained once for the module, with its own
    textures and cache (which its config.json names). Tests read it through ``finished``."""
    folder, _ = train_once(tmp_path_factory, sources, "--ifm", "--samples", "8", "--epochs", "2")
    return folder


@pytest.fixture
def finished(finished_run, tmp_path):
    """A copy of the module's finished run in tmp_path / "run": the test may change,
    move or delete it."""
    return copy_run(finished_run, tmp_path / "run")


# --- evaluate.py ------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["best_digit", "best_texture"])
def test_evaluate_reproduces_the_runs_own_test_numbers(finished, which, capsys):
    assert evaluate([str(finished / f"{which}.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = json.loads((finished / "report.json").read_text())["rows"][which]
    assert result["test_digit_acc"] == row["test_digit_acc"]
    assert result["test_texture_acc"] == row["test_texture_acc"]
    assert result["images"] == 100


def test_evaluate_on_validation_matches_the_selecting_numbers(finished, capsys):
    assert evaluate([str(finished / "best_digit.npz"), "--split", "val", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = json.loads((finished / "report.json").read_text())["rows"]["best_digit"]
    assert (result["val_digit_acc"], result["val_texture_acc"]) == (row["val_digit_acc"],
                                                                    row["val_texture_acc"])


def test_a_checkpoint_is_self_contained(finished, tmp_path, capsys):
    # moved away from its run folder (no config.json beside it), it still evaluates
    alone = tmp_path / "elsewhere" / "model.npz"
    alone.parent.mkdir()
    alone.write_bytes((finished / "best_digit.npz").read_bytes())
    assert evaluate([str(alone), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = json.loads((finished / "report.json").read_text())["rows"]["best_digit"]
    assert result["test_digit_acc"] == row["test_digit_acc"]


def test_an_old_checkpoint_loads_through_its_run_folder(finished, capsys):
    path = finished / "best_digit.npz"
    with np.load(path) as f:
        old = {k: f[k] for k in f.files if k != "model_json"}
    np.savez(path, **old)                        # as files were before the record existed
    assert evaluate([str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = json.loads((finished / "report.json").read_text())["rows"]["best_digit"]
    assert result["test_digit_acc"] == row["test_digit_acc"]
    (finished / "config.json").unlink()
    assert evaluate([str(path)]) == 2
    assert "no config.json lies beside it" in capsys.readouterr().err


def test_evaluate_classifies_image_files_of_any_size_and_mode(finished, tmp_path, capsys):
    files = []
    for name, image in (("rgba.png", Image.new("RGBA", (90, 60), (200, 10, 10, 128))),
                        ("gray16.png", Image.fromarray(
                            (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16))),
                        ("small.jpg", Image.new("RGB", (7, 9), (0, 120, 250)))):
        image.save(tmp_path / name)
        files.append(str(tmp_path / name))
    assert evaluate([str(finished / "best_digit.npz"), "--image", *files, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "resized to 32x32 RGB" not in lines[1] and "32x32" in lines[1]
    results = json.loads(lines[-1])["images"]
    assert [r["file"] for r in results] == files
    assert all(0 <= r["class"] <= 9 and 0.1 <= r["probability"] <= 1 for r in results)
    assert results[1]["size"] == "50x40 I;16"


@pytest.mark.parametrize("what, words", [
    ("missing", "no such file"), ("training", "is a training checkpoint"),
    ("text", "not an .npz archive"),
])
def test_evaluate_refuses_what_is_no_model_in_one_line(finished, tmp_path, capsys, what, words):
    path = {"missing": tmp_path / "nope.npz", "training": finished / "checkpoint.npz",
            "text": finished / "report.md"}[what]
    assert evaluate([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_evaluate_refuses_other_data(finished, tmp_path, capsys):
    other = tmp_path / "other-textures"
    other.mkdir()
    for i in range(10):
        Image.new("RGB", (48, 40), (i, 2 * i, 3 * i)).save(other / f"{i}.png")
    assert evaluate([str(finished / "best_digit.npz"), "--textures", str(other)]) == 2
    assert "the data differ from those the run was trained on" in capsys.readouterr().err


# --- defaults that must not take or change committed things ------------------------------------

def test_a_quick_try_does_not_take_a_main_runs_folder(tmp_path, sources, textures,  # noqa: F811
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IFM_MNIST_DIR", str(sources[0]))
    monkeypatch.setenv("IFM_TEXTURES", str(textures))       # as the README sets them
    assert main(["--cache-dir", str(tmp_path / "c"), "--ifm",
                "--samples", "8", "--epochs", "1", "--limit-train", "128",
                "--limit-eval", "100", "--batch-size", "64", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path / "runs")) == [
        "ifm-epochs1-limit-train128-limit-eval100-batch-size64-samples8-seed0"]


def test_reproduce_leaves_a_folder_of_other_settings_alone(finished, tmp_path):
    # a quick try that took a group's folder name is neither "done" nor overwritten
    runs = tmp_path / "runs"
    runs.mkdir()
    finished.rename(runs / "ifm-seed0")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh"), "main", "--list"],
                         env={**os.environ, "RUNS_DIR": str(runs)}, capture_output=True,
                         text=True, cwd=ROOT, check=True)
    assert "ifm-seed0" not in out.stdout
    assert "ifm-seed0 holds a run with other settings" in out.stderr
    assert "--epochs 2 (wanted 10)" in out.stderr


def test_make_results_leaves_the_committed_results_alone_and_keeps_toys_out(finished,
                                                                             tmp_path,
                                                                             monkeypatch):
    from scripts import make_results
    runs = tmp_path / "runs"
    runs.mkdir()
    finished.rename(runs / "ifm-seed0")             # a toy run under a main run's name
    monkeypatch.chdir(tmp_path)
    assert make_results.main([]) == 0
    assert (tmp_path / "runs" / "results" / "runs.md").exists()
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "runs" / "results" / "table3.md").exists()     # not a main run


def test_report_names_the_settings_that_differ_from_the_main_ones(finished):
    report = (finished / "report.md").read_text()
    line = next(l for l in report.splitlines() if l.startswith("Settings that differ"))
    assert line.startswith("Settings that differ from the main configuration of the method: "
                           "--textures ")             # the fixture's folder, given as a flag
    assert line.endswith(", --limit-train 64, --limit-eval 100, --batch-size 32, --samples 8.")


# --- inputs refused in one line, or handled ---------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--momentum", "2"], "--momentum: expected a momentum in [0, 1)"),
    (["--out", ""], "--out '': give a folder"),
    (["--cpu-cores", "4096"], "--cpu-cores 4096: this process may use"),
])
def test_bad_values_are_refused_in_one_line(tmp_path, argv, words, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_batch_too_large_for_memory_is_refused_before_the_folder(tmp_path, train, capsys):  # noqa: F811,E501
    assert train(tmp_path / "r", "--batch-size", "100000") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]     # after the data's build lines
    assert last.startswith("train.py: error: --batch-size 100000: a training step would need")
    assert last.endswith("use a smaller --batch-size")
    assert not (tmp_path / "r").exists()


def test_a_second_process_is_refused_naming_the_holder(tmp_path, train, capsys):  # noqa: F811
    (tmp_path / "r").mkdir()
    holder = {"pid": 4242, "host": "elsewhere", "started": "2026-12-06 05:00:00",
              "command": "python train.py"}
    lock = take_lock(str(tmp_path / "r" / "run.lock"), holder)
    assert train(tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "is in use by another run (process 4242 on elsewhere" in err
    assert not (tmp_path / "r" / "config.json").exists()
    lock.release()
    # one epoch: a run of any length takes and releases the lock the same way
    assert train(tmp_path / "r", "--epochs", "1") == 0
    assert not (tmp_path / "r" / "run.lock").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, train):  # noqa: F811
    # the kernel dropped the dead process's flock; its file, still naming it, stays behind
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.lock").write_text(json.dumps({"pid": 999999, "host": "x"}))
    assert train(tmp_path / "r", "--epochs", "1") == 0      # one epoch: any run takes the lock


def test_a_lock_is_held_by_another_process_too(tmp_path):
    # flock between two processes, not only within one
    script = ("import sys, time; from experiment.runfolder import take_lock; "
              f"l = take_lock({str(tmp_path / 'run.lock')!r}, {{'pid': 1}}); "
              "print('held', flush=True); time.sleep(30)")
    other = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert take_lock(str(tmp_path / "run.lock"), {"pid": 2}) == {"pid": 1}
    finally:
        other.kill()
        other.wait()
    assert take_lock(str(tmp_path / "run.lock"), {"pid": 2}).fd is not None


@pytest.mark.parametrize("flags", [["--resume"], ["--restart"], []])
def test_a_held_folder_is_refused_before_anything_in_it_is_read(tmp_path, train, monkeypatch,  # noqa: F811,E501
                                                               capsys, flags):
    # A run is finishing in r (it holds run.lock) while its files change. A resume, a
    # restart or a new run into r is refused at once: it reads none of r's files, builds no
    # data, and leaves every file as it was, byte for byte.
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "config.json").write_text('{"settings": {"being": "rewritten"}')
    (folder / "checkpoint.npz").write_bytes(b"a checkpoint being written")
    holder = {"pid": 4242, "host": "elsewhere", "started": "2026-12-06 05:00:00",
              "command": "python train.py"}
    lock = take_lock(str(folder / "run.lock"), holder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    read = []
    for name in ("exists", "holds_run", "load_config", "load_checkpoint", "clear"):
        original = getattr(run_module.RunFolder, name)
        monkeypatch.setattr(run_module.RunFolder, name,
                            lambda self, *a, name=name, original=original:
                            read.append(name) or original(self, *a))

    def no_data(*args):
        raise AssertionError("the data were built for a folder another run holds")

    monkeypatch.setattr(run_module, "load_dataset", no_data)
    code = train.resume(folder) if flags == ["--resume"] else train(folder, *flags)
    assert code == 2
    err = capsys.readouterr().err
    assert "is in use by another run (process 4242 on elsewhere" in err and "Traceback" not in err
    assert read == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    lock.release()


def test_a_refused_new_run_leaves_no_folder_behind(tmp_path, capsys):
    # the folder is made to be locked first; refused, the command removes what it made
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "runs" / "new" / "r"
    assert main(["--out", str(out), "--mnist-dir", str(empty), "--textures", "procedural",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert str(empty) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_sigterm_exits_143_after_saving(tmp_path, train, monkeypatch, capsys):  # noqa: F811
    original = ClassifierMethod.train_step

    def step(self, index, e, s):
        if (e, s) == (1, 0):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, index, e, s)

    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    assert train(tmp_path / "r", "--epochs", "2") == 143
    assert (tmp_path / "r" / "checkpoint.npz").exists()


def test_a_16_bit_texture_keeps_its_contrast(tmp_path):
    from data.textures import read_image
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "t.png")
    rgb = np.asarray(read_image(tmp_path / "t.png"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp * (255 / 65535)).astype(np.uint8))


@pytest.mark.parametrize("argv, words", [
    (["--out", "fig"], "ending in .png"), (["--n", "0"], "between 1 and 100"),
])
def test_the_figure_refuses_what_it_cannot_draw(argv, words, capsys):
    from data.figure import main as figure
    with pytest.raises(SystemExit) as exc:
        figure(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_the_benchmark_lists_its_rows_for_an_unknown_one(capsys):
    from benchmarks import bench
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rows", "bogus", "--no-torch"])
    assert exc.value.code == 2
    assert "no row bogus; the rows are train_step_baseline" in capsys.readouterr().err
