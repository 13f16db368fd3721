"""A picture like the paper's Figure 3: train and test samples with their digit and texture labels.

Top panel: train samples, one per digit in turn (0, 1, ..., 9, 0, ...), where the
texture id equals the digit. Bottom panel: the first test samples, where the
texture is independent of the digit. Each tile is the 32x32 image enlarged
(nearest neighbour) with "digit d / texture t" under it.

CLI:  python -m data.figure --out results/figure3.png [--mnist-dir D] [--textures T]
      [--cache-dir C] [--seed S] [--n N]     (unset flags fall back to IFM_* variables)
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from experiment.cli import quiet_on_closed_pipe

SCALE = 3
COLUMNS = 10
CAPTION = 26       # px of text under each tile
TITLE = 22         # px of panel title
GAP = 6


def _train_picks(split, n):
    """n train indices cycling through the digits 0..9 (fewer if a digit runs out)."""
    by_digit = [list(np.flatnonzero(split.digit == d)) for d in range(10)]
    picks = []
    for i in range(n):
        pool = by_digit[i % 10]
        if pool:
            picks.append(pool.pop(0))
    return picks


def save_dataset_figure(ds, path, n=10):
    """Write a PNG of ``n`` train and ``n`` test samples of ``ds`` with labels; returns the path."""
    font = ImageFont.load_default()
    tile = 32 * SCALE
    panels = [("train: texture id = digit", ds.train, _train_picks(ds.train, n)),
              ("test: texture id independent of the digit", ds.test,
               list(range(min(n, len(ds.test)))))]
    columns = min(COLUMNS, max(1, n))
    cell_w, cell_h = tile + GAP, tile + CAPTION
    panel_heights = [TITLE + cell_h * -(-len(picks) // columns) for _, _, picks in panels]
    width = GAP + columns * cell_w
    canvas = Image.new("RGB", (width, sum(panel_heights) + GAP * 3), "white")
    draw = ImageDraw.Draw(canvas)
    top = GAP
    for (title, split, picks), height in zip(panels, panel_heights):
        draw.text((GAP, top + 4), title, fill="black", font=font)
        for k, i in enumerate(picks):
            x = GAP + (k % columns) * cell_w
            y = top + TITLE + (k // columns) * cell_h
            image = Image.fromarray(np.ascontiguousarray(split.images[i].transpose(1, 2, 0)))
            canvas.paste(image.resize((tile, tile), Image.Resampling.NEAREST), (x, y))
            draw.text((x, y + tile + 2), f"digit {split.digit[i]}", fill="black", font=font)
            draw.text((x, y + tile + 13), f"texture {split.texture[i]}", fill="black", font=font)
        top += height + GAP
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


@quiet_on_closed_pipe
def main(argv=None):
    from .errors import DataError
    from .shifted_mnist import load_shifted_mnist
    p = Parser(prog="python -m data.figure", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join("runs", "figure3.png"),
                   help="PNG to write (default: runs/figure3.png; the committed one is "
                        "results/figure3.png)")
    p.add_argument("--mnist-dir", default=None, help="MNIST directory (default: $IFM_MNIST_DIR, "
                                                     "else download into the cache)")
    p.add_argument("--textures", default=None, help="'dtd', 'procedural' or a directory "
                                                    "(default: $IFM_TEXTURES, else 'dtd')")
    p.add_argument("--cache-dir", default=None, help="cache root (default: $IFM_CACHE_DIR or "
                                                     "~/.cache/ifm)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--n", type=int, default=10, help="samples per split, 1-100 (default: 10)")
    args = p.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        p.error(f"--out {args.out}: the figure is a PNG; give a file name ending in .png")
    if not 1 <= args.n <= 100:
        p.error(f"--n {args.n}: give between 1 and 100 samples per split")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: give a data seed >= 0")
    try:
        ds = load_shifted_mnist(args.mnist_dir, args.textures, args.seed, args.cache_dir)
        print(save_dataset_figure(ds, args.out, args.n))
    except DataError as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{p.prog}: error: --out {args.out}: cannot write it ({err.strerror or err}); "
              "choose another --out", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
