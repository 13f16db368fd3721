"""docs/walkthrough.py runs to the end in its quick settings, through the renderer, and its
inline checks pass; the committed page was rendered from the script as it is now.

The walkthrough asserts its own gradient checks (tests/gradcheck.py), so a wrong gradient, or
a library change that breaks a cell, fails here. Data: IFM_MNIST_DIR and IFM_TEXTURES when set
(CI sets both); without them a small synthetic MNIST and the procedural textures stand in (the
test says so), so the walkthrough and its checks still run; only its numbers differ.
"""
import os
import re
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest
from fixtures_data import synthetic_mnist, write_mnist_dir

from scripts.render_walkthrough import recorded_digest, render, source_digest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "walkthrough.md"
SCRIPT = ROOT / "docs" / "walkthrough.py"
CHECKS = ("JSD gradient check", "dv gradient check", "paper-eq4 gradient check",
          "pair layer gradient check", "d(-lambda F)/dH check", "dL/dH_2 check")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(page text, stderr) of ``render_walkthrough --quick`` into a temporary folder."""
    root = tmp_path_factory.mktemp("walkthrough")
    env = dict(os.environ)
    env.setdefault("IFM_CACHE_DIR", str(root / "cache"))
    if not env.get("IFM_MNIST_DIR"):
        env["IFM_MNIST_DIR"] = str(write_mnist_dir(root / "mnist", synthetic_mnist()))
        warnings.warn("walkthrough: IFM_MNIST_DIR is unset; it ran on a synthetic MNIST")
    if not env.get("IFM_TEXTURES"):
        env["IFM_TEXTURES"] = "procedural"
        warnings.warn("walkthrough: IFM_TEXTURES is unset; it ran on the procedural textures")
    out = root / "page" / "walkthrough.md"
    done = subprocess.run([sys.executable, "-m", "scripts.render_walkthrough", "--quick",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out.read_text(), done.stderr


def test_the_walkthrough_runs_and_its_checks_pass(rendered):
    page, _ = rendered
    for part in ("## 1. The problem", "## 2. Equations (1)-(4)", "## 3. Section 3.2",
                 "## 4. Eq. (5)", "## 5. It works"):
        assert part in page, part
    for check in CHECKS:
        lines = [line for line in page.splitlines() if line.startswith(check)]
        assert lines and all("passed" in line for line in lines), check
        for value in re.findall(r"\d\.\de-\d\d", " ".join(lines)):
            assert float(value) < 1e-7, (check, value)
    assert "mode: quick" in page
    assert "What the full runs found" in page


def test_the_committed_page_is_rendered_from_this_script():
    page = PAGE.read_text()
    assert recorded_digest(page) == source_digest(SCRIPT.read_text()), (
        "docs/walkthrough.md was rendered from another docs/walkthrough.py; render it again: "
        "python -m scripts.render_walkthrough --out docs/walkthrough.md")
    for link in re.findall(r"!\[[^]]*\]\(<([^>]+)>\)", page):
        assert (PAGE.parent / link).is_file(), link
    assert "mode: full" in page


def test_the_renderer_writes_prose_code_output_and_stops_at_a_failing_cell(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text("# %% [markdown]\n# # Title\n# Some *prose*.\n\n# %%\nx = 6 * 7\n"
                      "print('x =', x)\n\n# %%\nx += 1\n")
    out = tmp_path / "out" / "tiny.md"
    render(out, script=script, log=lambda text: None)
    page = out.read_text()
    assert "# Title\nSome *prose*." in page
    assert "```python\nx = 6 * 7\nprint('x =', x)\n```\n\n```text\nx = 42\n```" in page
    assert "```python\nx += 1\n```" in page and recorded_digest(page) == source_digest(
        script.read_text())
    assert not (out.parent / "tiny_files").exists()        # no figures, no folder

    script.write_text("# %%\nprint('fine')\n\n# %%\ny = 1\nraise ValueError('cell 2')\n")
    out.unlink()
    with pytest.raises(ValueError, match="cell 2") as error:
        render(out, script=script, log=lambda text: None)
    last = traceback.extract_tb(error.value.__traceback__)[-1]
    assert (last.filename, last.lineno) == (str(script), 6)     # the script's own line
    assert not out.exists()
