"""benchmarks/bench.py's output format (not its timings: speed is measured by running it)."""
import json

import pytest

from benchmarks import bench


def test_json_output_has_every_row(capsys):
    assert bench.main(["--device", "cpu", "--json", "--no-torch", "--batch", "2",
                       "--repeats", "1", "--warmup", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["device"], str) and out["device"]
    assert [r["name"] for r in out["rows"]] == ["train_step_baseline", "train_step_ifm_k64",
                                                "train_step_ifm_kall", "inference"]
    for row in out["rows"]:
        assert row["batch"] == 2 and row["ours_ms"] > 0 and row["torch_ms"] is None
        assert 0 < row["ours_host_ms"] <= row["ours_ms"]      # the CPU is done on return
        assert "torch_fp32_ms" not in row and "cpu_gpu_param_error" not in row


def test_table_output(capsys):
    assert bench.main(["--device", "cpu", "--no-torch", "--batch", "2", "--repeats", "1",
                       "--warmup", "0", "--rows", "inference"]) == 0
    out = capsys.readouterr().out
    assert "| inference" in out and "ours/torch" in out


def test_bad_core_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--cores", "0"])
    assert exc.value.code == 2
    assert "--cores" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["bench", "bench_ifm", "bench_ice"])
def test_gpu_without_a_gpu_is_a_usage_error(module, capsys):
    import importlib

    from nn import backend
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(f"benchmarks.{module}").main(["--device", "gpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device gpu" in err and ("CuPy" in err or "CUDA" in err)
    assert "Traceback" not in err


def test_scatter_benchmark_prints_its_four_cases(capsys):
    from benchmarks import bench_scatter
    bench_scatter.main(["--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["case", "add.at", "sorted", "sort"]
    assert len(lines) == 2 + len(bench_scatter.CASES)
