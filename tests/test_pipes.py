"""Output into a pipe that closes early (`... | head -n 1`): the commands stop quietly, with
the status SIGPIPE gives command-line tools (141), and no traceback (experiment/cli.py).

Each command runs with its stdout on a pipe whose reading end is already closed, so its
first write, or the flush at exit, meets the closed pipe whatever the timing.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_evaluate import run_folder  # noqa: F401 (fixture)
from test_train_run_folder import sources  # noqa: F401 (fixture)

from experiment.cli import CLOSED_PIPE_STATUS, quiet_on_closed_pipe

ROOT = Path(__file__).resolve().parent.parent


def into_closed_pipe(argv):
    """(exit status, stderr) of ``python argv`` writing into a pipe nobody reads."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


def assert_quiet(argv, stderr=""):
    """The command ends with status 141 and says nothing about the pipe (only ``stderr``,
    its own progress lines, where it prints those)."""
    status, err = into_closed_pipe(argv)
    assert status == CLOSED_PIPE_STATUS, (status, err)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    if stderr is not None:
        assert err == stderr


def test_evaluate_images_json_into_head(run_folder, tmp_path):  # noqa: F811
    # the case: evaluate.py ... --json --image *.png | head -n 1
    files = []
    for i in range(5):
        Image.new("RGB", (32, 32), (50 * i, 0, 0)).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    assert_quiet(["evaluate.py", str(run_folder / "best_digit.npz"), "--json", "--image", *files])


def test_aggregate_into_head(tmp_path):
    rows = {which: {"epoch": 1, "val_digit_acc": 0.5, "val_texture_acc": 0.5,
                    "test_digit_acc": 0.4, "test_texture_acc": 0.6}
            for which in ("best_digit", "best_texture")}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"method": "ifm", "rows": rows}))
        (tmp_path / name / "config.json").write_text(json.dumps({"settings": {"epochs": 2}}))
    assert_quiet(["-m", "scripts.aggregate", str(tmp_path / "a"), str(tmp_path / "b")])


def test_train_into_head(tmp_path, sources):  # noqa: F811
    # train.py prints its Table 3 block on stdout at the end
    mnist, _ = sources
    out = tmp_path / "r"
    assert_quiet(["train.py", "--out", str(out), "--mnist-dir", str(mnist), "--textures",
                  "procedural", "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
                  "--limit-train", "64", "--limit-eval", "50", "--batch-size", "32", "--quiet"],
                 stderr=None)                   # its progress lines go to stderr
    assert (out / "report.md").exists() and not (out / "run.lock").exists()


def commands():
    """Every file that runs a main() as a command (``if __name__ == "__main__"``), and
    experiment/run.py, whose main train.py and the installed ifm-train run."""
    found = ["experiment/run.py"]
    for path in sorted([*ROOT.glob("*/*.py")]):
        text = path.read_text()
        if "\ndef main(" in text and '__name__ == "__main__"' in text:
            found.append(str(path.relative_to(ROOT)))
    return [c for c in found if not c.startswith("tests/")]


COMMANDS = commands()


def test_the_commands_are_found():
    assert {"experiment/run.py", "experiment/evaluate.py", "scripts/make_results.py",
            "scripts/per_texture.py", "scripts/aggregate.py", "benchmarks/bench.py",
            "data/figure.py"} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_handles_it_in_the_one_shared_place(path):
    tree = ast.parse((ROOT / path).read_text())
    main = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert main, f"{path} has no main()"
    decorators = [ast.unparse(d) for d in main[0].decorator_list]
    assert "quiet_on_closed_pipe" in decorators, f"{path}: main() is not @quiet_on_closed_pipe"


def test_the_wrapper_passes_status_and_exits_through():
    assert quiet_on_closed_pipe(lambda: 3)() == 3

    @quiet_on_closed_pipe
    def usage():
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        usage()

    @quiet_on_closed_pipe
    def broken():
        raise BrokenPipeError

    assert broken() == CLOSED_PIPE_STATUS
