"""scripts/make_results.py on hand-made run folders."""
import json

import numpy as np
import pytest

from experiment.settings import parse
from scripts import make_results, texture_sets


def settings(*flags):
    """config.json's "settings" of a run of train.py ``flags``."""
    return parse(list(flags)).config.to_json()


MAIN_IFM = settings("--epochs", "10", "--ifm")


def fake_run(folder, settings, method, digit, textures=(), epoch=1):
    folder.mkdir(parents=True)
    rows = {which: {"epoch": epoch, "val_digit_acc": 0.5, "val_texture_acc": 0.5,
                    "test_digit_acc": digit, "test_texture_acc": 1 - digit}
            for which in ("best_digit", "best_texture")}
    (folder / "report.json").write_text(json.dumps({"method": method, "rows": rows}))
    data = {"textures": {"textures": [{"id": i, "file": f} for i, f in enumerate(textures)]}}
    (folder / "config.json").write_text(json.dumps({"settings": settings, "device": "cpu",
                                                    "data": data}))
    F = ",F_1_2" if settings["ifm"] else ""
    lines = [f"epoch,val_digit_acc{F},seconds"] + [
        f"{e},0.5{',-0.3' if F else ''},30" for e in (1, 2)]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")


def test_tables_from_run_folders(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "ifm-seed0", MAIN_IFM, "ifm", 0.40)
    fake_run(runs / "ifm-seed1", dict(MAIN_IFM, seed=1), "ifm", 0.50)
    fake_run(runs / "baseline-seed0", settings("--epochs", "10"), "baseline", 0.15)
    fake_run(runs / "ifm-lam10-seed0", dict(MAIN_IFM, lam=10.0), "ifm", 0.30)
    old = dict(MAIN_IFM, marginal="batch")
    del old["pair_features"]                    # a run saved before the setting existed
    fake_run(runs / "ifm-batchmarg-seed0", old, "ifm", 0.12)
    (runs / "ifm-unfinished").mkdir()
    out = tmp_path / "results"
    assert make_results.main(["--runs", str(runs), "--out", str(out)]) == 0
    table = json.loads((out / "table3.json").read_text())
    assert table["rows"]["Ours_digit"]["runs"] == 2
    assert abs(table["rows"]["Ours_digit"]["test_digit_acc"] - 0.45) < 1e-12
    assert table["rows"]["Baseline_digit"]["runs"] == 1
    assert table["paper_percent"]["Ours_digit"] == {"digit": 54.54, "texture": 40.41}
    body = [line for line in (out / "table3.md").read_text().splitlines()][2:]
    assert body == [                    # the paper's rows in its order (iCE as our two rows)
        "| Baseline_digit | 1 | 15.0 | 85.0 | 12.44 | 95.07 | 10 epochs |",
        "| Baseline_texture | 1 | 15.0 | 85.0 | 12.05 | 96.44 | 10 epochs |",
        "| iCE_fi-RevNet_digit | - | - | - | 40.01 | - | - |",
        "| iCE_fi-RevNet_texture | - | - | - | 40.01 | - | - |",
        "| Ours_digit | 2 | 45.0 ± 7.1 | 55.0 ± 7.1 | 54.54 | 40.41 | 10 epochs, lambda 30, K 64 |",
        "| Ours_texture | 2 | 45.0 ± 7.1 | 55.0 ± 7.1 | 31.78 | 69.00 | 10 epochs, lambda 30, K 64 |",
    ]
    listed = {r["run"]: r for r in json.loads((out / "runs.json").read_text())["runs"]}
    assert set(listed) == {"ifm-seed0", "ifm-seed1", "baseline-seed0", "ifm-lam10-seed0",
                           "ifm-batchmarg-seed0"}
    assert listed["ifm-lam10-seed0"]["changes"] == "--lam 10.0"
    assert listed["ifm-batchmarg-seed0"]["changes"] == "--marginal batch"
    assert listed["ifm-seed1"]["changes"] == "(main IFM settings)"
    assert listed["baseline-seed0"]["changes"] == "baseline"
    assert listed["ifm-seed0"]["train_minutes"] == 1.0
    assert listed["ifm-seed0"]["last_epoch_F"] == {"F_1_2": -0.3}
    assert (out / "runs" / "ifm-lam10-seed0" / "history.csv").exists()
    assert "| ifm-lam10-seed0 | --lam 10.0 | 2 | 1.0 | 1: 30.0 / 70.0 |" in (out / "runs.md").read_text()
    grouped = {g["group"]: g for g in json.loads((out / "groups.json").read_text())["groups"]}
    assert set(grouped) == {"ifm", "baseline", "ifm-lam10", "ifm-batchmarg"}
    assert grouped["ifm"]["seeds"] == [0, 1] and grouped["ifm"]["epochs"] == [2]
    mean, std = grouped["ifm"]["digit_ckpt_test_digit"]
    assert abs(mean - 0.45) < 1e-12 and abs(std - 0.0707107) < 1e-6
    assert grouped["ifm-lam10"]["digit_ckpt_test_digit"] == [0.30, None]
    assert ("| ifm | (main IFM settings) | 0,1 | 2 | 50.0 ± 0.0 | 45.0 ± 7.1 / 55.0 ± 7.1 "
            "| 45.0 ± 7.1 / 55.0 ± 7.1 |") in (out / "groups.md").read_text()


def test_copied_run_files_carry_no_machine_paths(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "ifm-seed0", MAIN_IFM, "ifm", 0.40)
    config = json.loads((runs / "ifm-seed0" / "config.json").read_text())
    config["data"] = {"cache_file": "/home/me/.cache/ifm/shifted-mnist-9bd7.npz",
                      "mnist": {"dir": "/data/mnist", "md5": "6bbc"}}
    (runs / "ifm-seed0" / "config.json").write_text(json.dumps(config))
    (runs / "ifm-seed0" / "train.log").write_text("run folder /scratch/runs/ifm-seed0: ifm\n")
    assert make_results.main(["--runs", str(runs), "--out", str(tmp_path / "results")]) == 0
    copied = tmp_path / "results" / "runs" / "ifm-seed0"
    data = json.loads((copied / "config.json").read_text())["data"]
    assert data == {"cache_file": "shifted-mnist-9bd7.npz", "mnist": {"dir": "mnist", "md5": "6bbc"}}
    assert (copied / "train.log").read_text() == "run folder ifm-seed0: ifm\n"


def test_texture_sets(tmp_path):
    """Runs grouped by the data they trained on; a seed counts once (its main run); runs
    with other method settings stay out; the correlation and line across sets."""
    runs = tmp_path / "runs"

    def run(name, method, digit, texture, sha, flags=()):
        folder = runs / name
        seed = name.rsplit("seed", 1)[1]
        fake_run(folder, settings(*flags, "--seed", seed, *(["--ifm"] if method == "ifm" else [])),
                 method, digit, [f"{sha}{i}.png" for i in range(10)])
        config = json.loads((folder / "config.json").read_text())
        config["data"]["textures"]["sha256"] = sha
        config["data"]["rendering"] = {"crops": "inside", "composite": "white strokes"}
        (folder / "config.json").write_text(json.dumps(config))
        report = json.loads((folder / "report.json").read_text())
        report["rows"]["best_digit"]["test_texture_acc"] = texture
        (folder / "report.json").write_text(json.dumps(report))

    run("ifm-seed0", "ifm", 0.44, 0.5, "s", ("--epochs", "10"))
    run("ifm-seed1", "ifm", 0.46, 0.5, "s", ("--epochs", "10"))
    run("ifm-e1-seed0", "ifm", 0.99, 0.5, "s", ("--epochs", "1"))        # a control: left out
    run("ifm-lam10-seed0", "ifm", 0.99, 0.5, "s", ("--epochs", "10", "--lam", "10"))
    run("baseline-seed0", "baseline", 0.18, 0.86, "s", ("--epochs", "10"))
    for draw, (ours, texture) in {1: (0.22, 0.98), 2: (0.24, 0.95), 3: (0.30, 0.93)}.items():
        flags = ("--epochs", "3", "--data-seed", str(draw))
        run(f"ifm-draw{draw}-seed0", "ifm", ours, 0.7, f"d{draw}", flags)
        run(f"baseline-draw{draw}-seed0", "baseline", 0.11, texture, f"d{draw}", flags)
    out = tmp_path / "results"
    assert make_results.main(["--runs", str(runs), "--out", str(out)]) == 0
    table = json.loads((out / "texture_sets.json").read_text())
    sets = table["sets"]
    assert set(sets) == {"shared", "draw1", "draw2", "draw3"}
    assert sets["shared"]["ifm"]["runs"] == ["ifm-seed0", "ifm-seed1"]
    assert sets["shared"]["ifm"]["test_digit"][0] == pytest.approx(0.45)
    assert sets["shared"]["baseline"]["test_texture"] == [0.86, None]
    assert sets["draw1"]["textures"] == [f"d1{i}" for i in range(10)]
    assert table["left_out"] == ["ifm-e1-seed0"]
    # the paper's regime: baseline texture >= 95% and digit <= 13%
    assert {n: v["paper_regime"] for n, v in sets.items()} == {
        "shared": False, "draw1": True, "draw2": True, "draw3": False}
    x = [0.86, 0.98, 0.95, 0.93]
    y = [0.45, 0.22, 0.24, 0.30]
    r = np.corrcoef(x, y)[0, 1]
    slope, intercept = np.polyfit(x, y, 1)
    assert table["across"]["r"] == pytest.approx(r)
    assert table["across"]["ours_digit_at_paper_baseline"] == pytest.approx(
        intercept + slope * 0.9507)
    assert texture_sets.set_name("ifm-e1-dataseed1-seed0") == "dataseed1"
    assert texture_sets.set_name("baseline-draw5-black-e2-seed2") == "draw5-black"
    text = (out / "texture_sets.md").read_text()
    assert text.splitlines()[2].startswith("| paper (DTD) | - | - | 95.07 | 12.44 | 54.54 |")
    assert text.splitlines()[3].startswith("| draw1 | 1 | ")       # the most texture-bound first


def test_a_diverged_run_is_listed_with_where_it_stopped(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "ifm-seed0", MAIN_IFM, "ifm", 0.45)
    folder = runs / "ifm-draw5-lam300-e1-seed0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"settings": dict(MAIN_IFM, lam=300.0)}))
    (folder / "train.log").write_text("train.py: the loss became NaN or inf at epoch 1, step 110; "
                                      "the run stopped.\n")
    (folder / "diverged").write_text("")
    out = tmp_path / "results"
    assert make_results.main(["--runs", str(runs), "--out", str(out)]) == 0
    listed = json.loads((out / "runs.json").read_text())
    assert listed["diverged"] == [{"run": "ifm-draw5-lam300-e1-seed0", "changes": "--lam 300.0",
                                   "epoch": 1, "step": 110}]
    assert "| ifm-draw5-lam300-e1-seed0 | --lam 300.0 | epoch 1, step 110 |" in \
        (out / "runs.md").read_text()
    assert (out / "runs" / "ifm-draw5-lam300-e1-seed0" / "diverged").exists()
