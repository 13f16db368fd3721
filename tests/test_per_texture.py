"""scripts/per_texture.py: test digit accuracy split by background texture."""
import json

import numpy as np
import pytest
from test_train_run_folder import sources, textures, train  # noqa: F401 (fixtures)

from scripts import per_texture


def test_draw_of_reads_the_run_name():
    assert per_texture.draw_of("runs/ifm-draw3-seed1") == ("ifm", "draw3", 1)
    assert per_texture.draw_of("baseline-seed0/") == ("baseline", "shared", 0)
    with pytest.raises(per_texture.UsageError, match="not a run folder name"):
        per_texture.draw_of("runs/ice-cpu-k2-seed0")


def test_per_texture_splits_the_runs_own_test_accuracy(tmp_path, train, textures, capsys):  # noqa: F811,E501
    folder = tmp_path / "ifm-draw7-seed0"          # named as IFM, run as the baseline
    assert train(folder, "--epochs", "1") == 0
    out = tmp_path / "pt.json"
    capsys.readouterr()
    assert per_texture.main([str(folder), "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert (run["method"], run["draw"], run["seed"]) == ("baseline", "draw7", 0)
    report = json.loads((folder / "report.json").read_text())["rows"]["best_digit"]
    counts, accuracy = run["images_per_texture"], run["per_texture"]
    assert sum(counts) == 100                              # the fixture's test images
    pooled = sum(a * n for a, n in zip(accuracy, counts) if n) / sum(counts)
    assert abs(pooled - report["test_digit_acc"]) < 1e-12
    assert run["textures"] == [f"{i}.png" for i in range(10)]
    printed = capsys.readouterr().out
    assert printed.startswith("draw7:\n  0 0.png")
    assert "baseline" in printed.splitlines()[1]
    # each texture's brightness, the mean of its RGB values / 255, read from its file
    from PIL import Image
    level = json.loads(out.read_text())["draws"]["draw7"]["brightness"]
    for i, value in enumerate(level):
        rgb = np.asarray(Image.open(textures / f"{i}.png").convert("RGB"), dtype=float)
        assert abs(value - rgb.mean() / 255) < 1e-12


def test_a_wrongly_named_folder_is_refused_in_one_line(tmp_path, train, capsys):  # noqa: F811
    folder = tmp_path / "my-run"
    assert train(folder, "--epochs", "1") == 0
    capsys.readouterr()
    assert per_texture.main([str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder name" in err[0]
