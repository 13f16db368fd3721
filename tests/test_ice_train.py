"""train.py --method ice-firevnet end to end on the synthetic MNIST of test_train_run_folder.

The run folder and its report rows, an interrupted and resumed run that replays the
uninterrupted one exactly, the flags refused with one line, and old run folders
(no "method" in their config) that still resume.
"""
import csv
import json
import os
import signal

import numpy as np
import pytest
from test_train_run_folder import (assert_same_state, one_line_error, sources,  # noqa: F401
                                   textures, train)

from ice.method import IceMethod
from experiment.run import main

# 3 steps per epoch, of 16 images (a step runs the same code at any batch size)
ICE = ["--method", "ice-firevnet", "--flow-depth", "2", "--limit-train", "48",
       "--batch-size", "16", "--limit-eval", "50"]


def test_an_ice_run_writes_its_rows_and_replays_after_an_interrupt(tmp_path, train,
                                                                     monkeypatch, capsys):
    original = IceMethod.train_step

    def step(self, index, epoch, s):
        if (epoch, s) == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)     # finish this step, save, stop mid-epoch
        return original(self, index, epoch, s)

    monkeypatch.setattr(IceMethod, "train_step", step)
    assert train(tmp_path / "cut", *ICE, "--epochs", "1") == 130
    progress = json.loads(str(np.load(tmp_path / "cut" / "checkpoint.npz")["progress_json"]))
    assert progress["partial"]["next_step"] == 1
    monkeypatch.setattr(IceMethod, "train_step", original)
    assert train.resume(tmp_path / "cut") == 0
    assert train(tmp_path / "straight", *ICE, "--epochs", "1") == 0
    assert_same_state(tmp_path / "straight" / "checkpoint.npz", tmp_path / "cut" / "checkpoint.npz")

    run = tmp_path / "straight"
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == "ice-firevnet" and report["steps_per_epoch"] == 3
    markdown = (run / "report.md").read_text()
    assert "| iCE_fi-RevNet_digit | 1 |" in markdown and "| iCE_fi-RevNet_texture | 1 |" in markdown
    with open(run / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert all(np.isfinite(float(row[k])) for k in ("nll_bpd", "ce_logits", "ce_nuisance"))
    assert 0 < float(row["nll_bpd"]) < 9
    norms = [float(row[k]) for k in ("grad_nll", "grad_ce_logits", "grad_nuisance")]
    assert all(np.isfinite(v) and v > 0 for v in norms)    # each term acts on the flow
    config = json.loads((run / "config.json").read_text())
    settings = config["settings"]
    assert config["method"] == settings["method"] == "ice-firevnet" and not settings["ifm"]
    assert (settings["optimizer"], settings["lr"], settings["flow_depth"],
            settings["ice_beta"], settings["ice_labels"]) == ("adamax", 1e-3, 2, 0.05, "true")
    with np.load(run / "checkpoint.npz") as f:
        groups = {k.split("/")[0] for k in f.files if k != "progress_json"}
    assert groups == {"clf", "nc", "opt", "opt_nc", "best_digit", "best_texture"}
    with np.load(run / "best_digit.npz") as f:
        assert {k.split(".")[0] for k in f.files} == {"flow", "bn", "model_json"}     # no D_nc
    assert "iCE_fi-RevNet_digit" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--method", "ice-firevnet", "--lam", "3"], "--lam only make sense with --ifm"),
    (["--method", "ice-firevnet", "--samples", "8", "--pairs", "1-2"],
     "--pairs, --samples only make sense with --ifm"),
    (["--method", "ice-firevnet", "--init", "fan-in-uniform"], "--init only make sense with"),
    (["--method", "ice-firevnet", "--ifm"], "clashes with --method ice-firevnet"),
    (["--ifm", "--flow-depth", "2"], "--flow-depth only make sense with --method ice-firevnet"),
    (["--ice-labels", "shuffled"], "not with --method baseline"),
    (["--method", "ice-firevnet", "--weight-decay", "0.1"], "adamax has no weight decay"),
    (["--method", "ice-firevnet", "--flow-depth", "1"],
     "each logit is an affine map (ActNorm, then the logits' batch norm) of a single input "
     "pixel"),
])
def test_flags_of_other_methods_are_refused_in_one_line(tmp_path, argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "r")] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_help_says_which_flags_apply_to_which_method(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "iCE fi-RevNet (--method ice-firevnet only)" in text
    assert "IFM regularizer (--method ifm, or --ifm, only)" in text


def test_an_old_run_folder_without_method_resumes(tmp_path, train):
    folder = tmp_path / "old"
    assert train(folder, "--epochs", "1") == 0
    config = json.loads((folder / "config.json").read_text())
    for key in ("method", "flow_depth", "ice_beta", "ice_labels"):
        config["settings"].pop(key)
    config.pop("method")
    (folder / "config.json").write_text(json.dumps(config))
    assert train.resume(folder, "--epochs", "2") == 0
    assert json.loads((folder / "report.json").read_text())["method"] == "baseline"
    assert json.loads((folder / "config.json").read_text())["settings"]["method"] == "baseline"


def test_old_settings_get_their_method_from_ifm():
    from experiment.config import Config
    assert Config.from_json({"ifm": True}).method == "ifm"
    assert Config.from_json({"ifm": False}).method == "baseline"
    assert Config.from_json({"ifm": False, "method": "ice-firevnet"}).method == "ice-firevnet"
