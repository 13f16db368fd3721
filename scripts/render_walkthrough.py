"""Run docs/walkthrough.py and write it as a Markdown page with every cell's output.

The walkthrough is a percent-format script: a line ``# %%`` starts a code
cell, ``# %% [markdown]`` a prose cell whose lines are comments. This runs the
code cells in order in one namespace (as ``python docs/walkthrough.py`` does,
``__name__ == "__main__"``), captures what each prints, saves the matplotlib
figures each leaves open as PNGs beside the page, and writes the page: prose,
code, output, figures. Standard library and the project only (no Jupyter).

    python -m scripts.render_walkthrough                  # to runs/walkthrough/walkthrough.md
    python -m scripts.render_walkthrough --quick          # the test's small settings
    python -m scripts.render_walkthrough --out docs/walkthrough.md   # the committed copy

Figures go to ``<page stem>_files/`` beside the page (``docs/walkthrough_files/``).
The page records the command, the settings mode, the time it took and the
sha256 of the script it ran (a test compares that with the script). A cell
that raises stops the run with the traceback (line numbers are the script's)
and exit status 1; no page is written then.
"""
import argparse
import contextlib
import hashlib
import io
import os
import sys
import time
import traceback
from pathlib import Path

from experiment.cli import quiet_on_closed_pipe
from nn.cpu.parallel import available_cores

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "walkthrough.py"
DEFAULT_OUT = ROOT / "runs" / "walkthrough" / "walkthrough.md"
MARKER = "# %%"
MARKDOWN = "# %% [markdown]"
SOURCE_TAG = "walkthrough.py sha256:"


class Cell:
    """One cell: ``kind`` "code" or "markdown", its text, and its first line in the script."""

    def __init__(self, kind, lines, line):
        self.kind, self.line = kind, line
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        self.text = "\n".join(lines)

    def markdown(self):
        """The prose of a markdown cell: each line without its leading "# " (or "#")."""
        return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                         for line in self.text.splitlines())


def parse_cells(source):
    """The cells of a percent-format script; text before the first marker is a code cell."""
    cells, kind, lines, start = [], "code", [], 1
    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith(MARKER):
            if any(part.strip() for part in lines):
                cells.append(Cell(kind, lines, start))
            kind = "markdown" if line.strip() == MARKDOWN else "code"
            lines, start = [], number + 1
        else:
            lines.append(line)
    if any(part.strip() for part in lines):
        cells.append(Cell(kind, lines, start))
    return cells


def source_digest(source):
    return hashlib.sha256(source.encode()).hexdigest()


def recorded_digest(page):
    """The script sha256 a rendered page records, or None."""
    for line in page.splitlines():
        if SOURCE_TAG in line:
            return line.split(SOURCE_TAG, 1)[1].split()[0]
    return None


def save_figures(files, stem, number):
    """Save and close the open matplotlib figures; returns their paths."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    paths = []
    for k, num in enumerate(pyplot.get_fignums(), start=1):
        files.mkdir(parents=True, exist_ok=True)
        path = files / f"{stem}-cell{number:02d}-{k}.png"
        pyplot.figure(num).savefig(path, dpi=100, bbox_inches="tight",
                                   metadata={"Software": None})
        pyplot.close(num)
        paths.append(path)
    return paths


def run_cells(cells, script, argv, files, stem, log):
    """Execute the code cells in one namespace; returns [(cell, output, figure paths)]."""
    namespace = {"__name__": "__main__", "__file__": str(script)}
    results, saved_argv = [], sys.argv
    sys.argv = [str(script)] + argv
    try:
        for number, cell in enumerate(cells, start=1):
            if cell.kind == "markdown":
                results.append((cell, "", []))
                continue
            log(f"cell {number}/{len(cells)} (line {cell.line}) ...")
            code = compile("\n" * (cell.line - 1) + cell.text, str(script), "exec")
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                exec(code, namespace)
            results.append((cell, output.getvalue(), save_figures(files, stem, number)))
    finally:
        sys.argv = saved_argv
    return results


def page(results, out, header):
    parts = [header]
    for cell, output, figures in results:
        if cell.kind == "markdown":
            parts.append(cell.markdown())
            continue
        parts.append(f"```python\n{cell.text}\n```")
        if output.strip():
            parts.append(f"```text\n{output.rstrip()}\n```")
        for path in figures:
            parts.append(f"![figure](<{os.path.relpath(path, out.parent)}>)")
    return "\n\n".join(parts) + "\n"


def render(out=DEFAULT_OUT, quick=False, script=SCRIPT, log=None):
    """Run ``script`` and write its page to ``out``; returns the seconds it took."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    script, out = Path(script).resolve(), Path(out).resolve()
    source = script.read_text()
    files = out.parent / f"{out.stem}_files"
    for old in files.glob(f"{out.stem}-cell*.png"):      # figures of an earlier render
        old.unlink()
    start = time.perf_counter()
    results = run_cells(parse_cells(source), script, ["--quick"] if quick else [], files,
                        out.stem, log)
    seconds = time.perf_counter() - start
    shown = os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else str(out)
    command = "python -m scripts.render_walkthrough" + (" --quick" if quick else "") + \
        (f" --out {shown}" if out != DEFAULT_OUT.resolve() else "")
    header = (f"<!-- Rendered from docs/walkthrough.py by `{command}`: do not edit; edit the "
              f"script and render again. {SOURCE_TAG} {source_digest(source)} -->\n\n"
              f"*Rendered with `{command}` ({'quick' if quick else 'full'} settings, printed "
              f"in the first output below); running every cell took {seconds:.0f} s on "
              f"{available_cores()} CPU cores.*")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(results, out, header))
    if files.is_dir() and not any(files.iterdir()):
        files.rmdir()
    log(f"wrote {out} in {seconds:.0f} s")
    return seconds


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.render_walkthrough",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="the page to write (default: runs/walkthrough/walkthrough.md; the "
                        "committed copy is docs/walkthrough.md)")
    p.add_argument("--quick", action="store_true",
                   help="the walkthrough's small settings (as the test runs it)")
    args = p.parse_args(argv)
    if not args.out.endswith(".md"):
        p.error(f"--out {args.out}: the page is Markdown; give a file name ending in .md")
    try:
        render(args.out, args.quick)
    except Exception:               # a cell failed: its traceback, with the script's lines
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
