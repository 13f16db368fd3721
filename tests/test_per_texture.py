"""scripts/per_texture.py: test digit accuracy split by background texture."""
import json

import numpy as np
import pytest
from test_train_run_folder import sources, textures, train  # noqa: F401 (fixtures)

from scripts import per_texture


def test_draw_of_reads_the_run_name():
    assert per_texture.draw_of("runs/ifm-draw3-seed1") == ("ifm", "draw3", 1)
    assert per_texture.draw_of("baseline-seed0/") == ("baseline", "shared", 0)
    assert per_texture.draw_of("baseline-draw5-black-e2-seed0") == ("baseline", "draw5-black", 0)
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


def test_the_confusions_count_each_test_image_once(tmp_path, train, capsys):  # noqa: F811
    folder = tmp_path / "baseline-draw7-seed0"
    assert train(folder, "--epochs", "1") == 0
    out = tmp_path / "pt.json"
    capsys.readouterr()
    assert per_texture.main([str(folder), "--confusion", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    report = json.loads((folder / "report.json").read_text())["rows"]["best_digit"]
    texture, digit = np.array(run["texture_confusion"]), np.array(run["digit_confusion"])
    assert texture.sum() == digit.sum() == 100
    assert list(texture.sum(axis=1)) == run["images_per_texture"]
    np.testing.assert_array_equal(texture.sum(axis=0), digit.sum(axis=0))   # the same predictions
    assert np.trace(texture) / 100 == pytest.approx(report["test_texture_acc"], abs=1e-12)
    assert np.trace(digit) / 100 == pytest.approx(report["test_digit_acc"], abs=1e-12)
    for matrix, recall in ((texture, run["texture_recall"]), (digit, run["digit_recall"])):
        for i, value in enumerate(recall):
            n = matrix[i].sum()
            assert value == (None if n == 0 else pytest.approx(matrix[i, i] / n, abs=1e-12))
    draw = json.loads(out.read_text())["draws"]["draw7"]
    assert draw["runs"] == {"baseline": ["baseline-draw7-seed0"]}
    assert draw["baseline_digit_recall"][3] == pytest.approx(
        np.nan if run["digit_recall"][3] is None else run["digit_recall"][3], nan_ok=True)
    printed = capsys.readouterr().out.splitlines()
    start = printed.index(next(line for line in printed if "test texture confusion" in line))
    row = printed[start + 2].split()
    assert row[:2] == ["0", "0.png"] and len(row) == 12
    shares = np.array([float(v) for v in row[2:]])
    np.testing.assert_allclose(shares, np.round(100 * texture[0] / max(texture[0].sum(), 1)))
    assert printed[start + 12].startswith("  digit recall")


def test_a_wrongly_named_folder_is_refused_in_one_line(tmp_path, train, capsys):  # noqa: F811
    folder = tmp_path / "my-run"
    assert train(folder, "--epochs", "1") == 0
    capsys.readouterr()
    assert per_texture.main([str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder name" in err[0]
