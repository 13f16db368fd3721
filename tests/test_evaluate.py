"""evaluate.py on what users hand it: image files of any kind and count, damaged model
files, run folders. Every refusal is one line naming the file, exit status 2.

The model is an untrained classifier saved as train.py saves its best models
(RunFolder.save_best with a saved_model record), so no training is needed.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiment import evaluate as evaluate_module
from experiment.evaluate import main as evaluate
from experiment.runfolder import CHECKPOINT, CONFIG, RunFolder
from experiment.config import Config
from experiment.saved_model import META_KEY, build_model
from nn.serialization import state_to_numpy

ROOT = Path(__file__).resolve().parent.parent
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"


def model_record():
    settings = {"method": "baseline", "seed": 0, "data_seed": 0, "pair_features": "pre-pool"}
    return {"format": 1, "method": "baseline", "settings": settings,
            "normalization": {"mean": [0.3, 0.3, 0.3], "std": [0.25, 0.25, 0.25]},
            "data": {"cache_key": "k"}, "sources": None,
            "selected": {"epoch": 1, "step": 10, "val_digit_acc": 0.5, "val_texture_acc": 0.5}}


@pytest.fixture
def run_folder(tmp_path):
    """A run folder holding best_digit.npz (an untrained classifier) and a config.json."""
    folder = RunFolder(tmp_path / "run")
    folder.create()
    model = build_model(Config.from_json(model_record()["settings"]),
                        rng=np.random.default_rng(0))
    folder.save_best("best_digit", state_to_numpy(model.state_dict()), model_record())
    folder.save_config({"settings": model_record()["settings"]})
    return Path(folder.path)


def one_line(capsys):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("evaluate.py: error: ")
    return err


def images(folder, count):
    """``count`` small PNG files of different sizes and colours."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.new("RGB", (20 + i, 30), (40 * i % 256, 255 - 30 * i % 256, 90)).save(path)
        paths.append(str(path))
    return paths


# --- 1. one image reader, restricted to the formats we accept ------------------------------

def test_an_eps_file_named_png_never_reaches_ghostscript(run_folder, tmp_path):
    """A PostScript file named drawing.png: with a gs on PATH, Pillow's EPS plugin would run
    it. The image path reads through data/images.py, which never tries that decoder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "gs-ran"
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> {ran}\nexit 0\n")
    gs.chmod(0o755)
    drawing = tmp_path / "drawing.png"
    drawing.write_bytes(EPS)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "evaluate.py", str(run_folder / "best_digit.npz"),
                           "--image", str(drawing)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert not ran.exists(), "Ghostscript was run on an untrusted file"
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"evaluate.py: error: --image {drawing}: cannot read it as an image")
    assert err.endswith("Give a PNG, JPEG, BMP, GIF, TIFF, WebP or PPM file")


def test_the_image_path_and_the_textures_share_one_list_of_formats(run_folder, tmp_path,
                                                                  monkeypatch, capsys):
    from data import images as images_module
    from data.errors import DataError
    from data.textures import load_textures
    files = images(tmp_path / "img", 10)
    monkeypatch.setattr(images_module, "IMAGE_FORMATS", ("JPEG",))      # PNG no longer allowed
    assert evaluate([str(run_folder / "best_digit.npz"), "--image", files[0]]) == 2
    assert f"--image {files[0]}: cannot read it as an image" in one_line(capsys)
    with pytest.raises(DataError, match="0.png: cannot read it as an image"):
        load_textures(str(tmp_path / "img"))


@pytest.mark.parametrize("what, words", [
    ("text", "cannot read it as an image (cannot identify image file"),
    ("missing", "no such file"),
    ("folder", "a directory, not an image file"),
])
def test_any_other_file_is_a_one_line_error_naming_it(run_folder, tmp_path, capsys, what, words):
    path = tmp_path / "x.png"
    if what == "text":
        path.write_text("not an image\n")
    elif what == "folder":
        path.mkdir()
    good = images(tmp_path / "img", 1)
    assert evaluate([str(run_folder / "best_digit.npz"), "--image", *good, str(path)]) == 2
    err = one_line(capsys)
    assert f"--image {path}: {words}" in err


# --- 2. a damaged record ---------------------------------------------------------------------

def rewrite_record(path, record):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[META_KEY] = np.array(record)
    np.savez(path, **arrays)


def without(key):
    record = model_record()
    del record[key]
    return json.dumps(record)


@pytest.mark.parametrize("record, words", [
    ("{not json", "not JSON"),
    (json.dumps([1, 2]), "it is not a JSON object"),
    (without("settings"), "it has no settings"),
    (without("normalization"), "it has no input normalization"),
    (json.dumps({**model_record(), "method": "other"}), "it names no method of this code"),
    (json.dumps({**model_record(), "selected": {"epoch": 1}}), "the selecting validation"),
])
def test_a_damaged_model_record_is_a_one_line_error(run_folder, tmp_path, capsys, record, words):
    path = run_folder / "best_digit.npz"
    rewrite_record(path, record)
    for argv in ([str(path)], [str(path), "--image", *images(tmp_path / "img", 1)]):
        assert evaluate(argv) == 2
        err = one_line(capsys)
        assert f"{path}: its model record is damaged (" in err and words in err


def test_a_damaged_record_names_the_resume_that_rewrites_it(run_folder, capsys):
    path = run_folder / "best_digit.npz"
    rewrite_record(path, without("settings"))
    (run_folder / CHECKPOINT).write_bytes(b"")
    assert evaluate([str(path)]) == 2
    assert one_line(capsys).endswith(f"rewrite it from the checkpoint beside it with: python "
                                     f"train.py --out {run_folder} --resume")


def test_an_old_file_with_a_damaged_config_is_a_one_line_error(run_folder, capsys):
    path = run_folder / "best_digit.npz"
    with np.load(path, allow_pickle=False) as f:
        np.savez(path, **{k: f[k] for k in f.files if k != META_KEY})   # written before records
    for config in ("{not json", json.dumps({"settings": {"ifm": False}})):
        (run_folder / CONFIG).write_text(config)
        assert evaluate([str(path)]) == 2
        err = one_line(capsys)
        assert f"{path} holds no model record, and {run_folder / CONFIG}" in err
        assert "is damaged" in err


# --- 5. any number of images in bounded memory ------------------------------------------------

def test_images_are_read_and_classified_a_batch_at_a_time(run_folder, tmp_path, monkeypatch,
                                                         capsys):
    files = images(tmp_path / "img", 7)
    assert evaluate([str(run_folder / "best_digit.npz"), "--image", *files, "--json"]) == 0
    whole = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"]

    read, batches = [], []
    read_image = evaluate_module.read_image
    monkeypatch.setattr(evaluate_module, "read_image", lambda p: read.append(p) or read_image(p))
    from experiment.classifier import Classifier
    forward = Classifier.forward

    def spy(self, x, *args, **kwargs):
        batches.append((x.shape[-1], len(read)))        # batch size, files read so far
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(Classifier, "forward", spy)
    monkeypatch.setattr(evaluate_module, "IMAGE_BATCH", 3, raising=False)
    assert evaluate([str(run_folder / "best_digit.npz"), "--image", *files, "--json"]) == 0
    assert batches == [(3, 3), (3, 6), (1, 7)]          # never more than a batch in memory
    batched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"]
    assert [r["file"] for r in batched] == files
    assert [r["class"] for r in batched] == [r["class"] for r in whole]
    np.testing.assert_allclose([r["probability"] for r in batched],
                               [r["probability"] for r in whole], rtol=1e-5)


def test_results_are_printed_as_each_batch_is_done(run_folder, tmp_path, monkeypatch, capsys):
    files = images(tmp_path / "img", 4)
    (tmp_path / "img" / "3.png").write_text("damaged")
    monkeypatch.setattr(evaluate_module, "IMAGE_BATCH", 2, raising=False)
    assert evaluate([str(run_folder / "best_digit.npz"), "--image", *files]) == 2
    out = capsys.readouterr().out
    assert f"{files[0]} (20x30 RGB): class" in out and f"{files[1]} (21x30 RGB)" in out
    assert files[2] not in out


# --- 8. a directory ----------------------------------------------------------------------------

def test_a_run_folder_names_the_models_to_evaluate(run_folder, capsys):
    assert evaluate([str(run_folder)]) == 2
    err = one_line(capsys)
    assert "no such file" not in err
    assert err.endswith(f"{run_folder} is a run folder, not a model file; evaluate one of its "
                        f"selected models: {run_folder / 'best_digit.npz'}")
    (run_folder / "best_texture.npz").write_bytes((run_folder / "best_digit.npz").read_bytes())
    assert evaluate([str(run_folder)]) == 2
    assert one_line(capsys).endswith(f"{run_folder / 'best_digit.npz'} or "
                                     f"{run_folder / 'best_texture.npz'}")


def test_a_run_folder_without_models_yet_says_so(run_folder, capsys):
    (run_folder / "best_digit.npz").unlink()
    assert evaluate([str(run_folder)]) == 2
    assert "is a run folder that holds no selected model yet" in one_line(capsys)


def test_another_directory_is_named_a_directory(tmp_path, capsys):
    assert evaluate([str(tmp_path)]) == 2
    assert one_line(capsys).endswith(f"{tmp_path} is a directory, not a file; give a "
                                     "best_digit.npz or best_texture.npz")
