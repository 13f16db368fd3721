"""Test digit accuracy per background texture, and the confusions, for runs grouped by draw.

    python -m scripts.per_texture RUN_DIR... [--confusion] [--json F] [--figure F.png] [data flags]

For each run folder, its best_digit.npz (the Ours_digit / Baseline_digit
checkpoint) classifies the run's test split (evaluate.py's path: the dataset
rebuilt as the run built it and checked against its record), and the digit
accuracy is split by each test image's background texture id. Runs are
grouped by draw: the folder name without the method, the epoch count and the
seed ("ifm-draw3-seed1" -> "draw3", "baseline-e2-seed0" -> "shared"; the main
runs' "ifm-seed0" -> "shared").

Prints, per draw, the ten textures (file names), the accuracy of each
method on each (mean over the draw's seeds) and each texture's brightness
(mean RGB / 255: white strokes on a bright texture have little contrast).
--confusion also prints, per run, where the texture shortcut holds and where
it fails: the texture confusion on test (rows: the background texture id,
columns: the predicted class, % of the row; its diagonal is the texture
recall) and the per-class digit recall (% of each digit's test images
predicted as that digit). A texture the classifier cannot tell from another
in training leaves those digits to be read from the strokes. --json always
holds both matrices as counts (texture_confusion, digit_confusion, rows the
true id, columns the predicted class) and the recalls.
--json writes every run's numbers and the per-draw means (absolute paths
cut to their last part, as in results/runs); --figure draws one
panel per draw, the two methods' accuracy per texture as bars, each
texture's thumbnail as its tick label (needs matplotlib: pip install -r
requirements-plots.txt).
"""
import json
import os
import re
import sys

import numpy as np

from experiment.cli import UsageError, quiet_on_closed_pipe
from experiment.evaluate import load_split
from experiment.provenance import without_machine_paths
from experiment.runfolder import read_json
from experiment.saved_model import SavedModelError, load
from scripts.texture_sets import set_name

RUN = re.compile(r"^(?P<method>baseline|ifm)-?(?P<draw>.*?)-?seed(?P<seed>\d+)$")


def draw_of(folder):
    """(method, draw name, seed) from a run folder's name; the draw is named as
    texture_sets names sets (epoch counts such as "e2" left out)."""
    name = os.path.basename(os.path.normpath(folder))
    match = RUN.match(name)
    if not match:
        raise UsageError(f"{folder}: not a run folder name of the form <method>[-<draw>]-seed<N>")
    return match["method"], set_name(name), int(match["seed"])


def per_texture(folder, args):
    """{run, method, draw, seed, textures, test_digit_acc, per_texture} of one run."""
    _, draw, seed = draw_of(folder)
    saved = load(os.path.join(folder, "best_digit.npz"))
    meta = saved.meta
    split = load_split(saved, args, "test", np)
    predictions = np.concatenate([
        saved.model.forward(saved.inputs(split.images[lo:lo + 1000])).argmax(axis=0)
        for lo in range(0, split.n, 1000)])
    correct = predictions == split.digit
    counts = [int((split.texture == t).sum()) for t in range(10)]
    accuracy = [float(correct[split.texture == t].mean()) if n else None
                for t, n in enumerate(counts)]
    texture_confusion = confusion(split.texture, predictions)
    digit_confusion = confusion(split.digit, predictions)
    report = read_json(os.path.join(folder, "report.json"))["rows"]["best_digit"]
    for name, value in (("digit", correct.mean()), ("texture", (predictions == split.texture).mean())):
        if abs(float(value) - report[f"test_{name}_acc"]) > 1e-12:
            raise UsageError(f"{folder}: its test {name} accuracy here, {value:.4f}, is not "
                             f"its report's {report[f'test_{name}_acc']:.4f}: other data?")
    method = meta["method"]                                # the record's, not the name's
    textures = meta["data"]["textures"]
    return {"run": os.path.basename(os.path.normpath(folder)), "method": method, "draw": draw,
            "seed": seed, "data_seed": saved.config.data_seed,
            "textures": [t.get("file") or t.get("pattern") for t in textures["textures"]],
            "texture_dir": textures.get("dir"), "test_digit_acc": float(correct.mean()),
            "test_texture_acc": float((predictions == split.texture).mean()),
            "per_texture": accuracy, "images_per_texture": counts,
            "texture_confusion": texture_confusion.tolist(),
            "digit_confusion": digit_confusion.tolist(),
            "texture_recall": recall(texture_confusion), "digit_recall": recall(digit_confusion)}


def confusion(truth, predicted, classes=10):
    """int64 (classes, classes): [i, j] = how many images of true id i were predicted j."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def recall(matrix):
    """Per row, the share on the diagonal (None for an empty row)."""
    rows = matrix.sum(axis=1)
    return [float(matrix[i, i] / n) if n else None for i, n in enumerate(rows)]


def confusion_text(run):
    """The texture confusion (% of each row) and the digit recall of one run, as lines."""
    matrix = np.array(run["texture_confusion"], dtype=float)
    share = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    lines = [f"{run['run']}: test texture confusion, % of each texture's images "
             "(rows: texture id, columns: predicted class)",
             "    texture                   " + "".join(f"{j:>5}" for j in range(10))]
    for i, texture in enumerate(run["textures"]):
        lines.append(f"  {i} {texture:<24}" + "".join(f"{v:5.0f}" for v in share[i]))
    lines.append("  digit recall, % per class:  " + "".join(
        "    -" if v is None else f"{100 * v:5.0f}" for v in run["digit_recall"]))
    return lines


def by_draw(results):
    """{draw: {"textures", "texture_dir", method: [mean accuracy per texture], ...}}."""
    draws = {}
    for r in results:
        d = draws.setdefault(r["draw"], {"textures": r["textures"], "texture_dir": r["texture_dir"],
                                         "runs": {}})
        d["runs"].setdefault(r["method"], []).append(r)
    for d in draws.values():
        d["brightness"] = [brightness(d["texture_dir"], t) for t in d["textures"]]
        for method, runs in d["runs"].items():
            d[method] = nanmean([r["per_texture"] for r in runs])
            d[f"{method}_texture_recall"] = nanmean([r["texture_recall"] for r in runs])
            d[f"{method}_digit_recall"] = nanmean([r["digit_recall"] for r in runs])
        d["runs"] = {method: [r["run"] for r in runs] for method, runs in d["runs"].items()}
    return draws


def nanmean(rows):
    """The mean over runs of per-class values (None, no such test image, left out)."""
    return [float(v) for v in np.nanmean(np.array(rows, dtype=float), axis=0)]


def texture_image(texture_dir, name, size=None):
    """The texture as an RGB uint8 array (resized to size x size if given); None where the
    file is not here."""
    from data.textures import read_image
    path = os.path.join(texture_dir or "", name or "")
    if not os.path.isfile(path):
        return None
    image = read_image(path)
    return np.asarray(image.resize((size, size)) if size else image)


def brightness(texture_dir, name):
    """Mean of the texture's RGB values / 255 (None where the file is not here). A digit's
    stroke is drawn as bg + (255 - bg) * digit / 255, so its contrast is 1 - this."""
    image = texture_image(texture_dir, name)
    return None if image is None else float(image.mean() / 255)


def draw_figure(draws, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    names = sorted(draws, key=lambda n: (n != "shared", n))
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        d = draws[name]
        x = np.arange(10)
        for offset, method, colour in ((-0.2, "baseline", "0.6"), (0.2, "ifm", "C0")):
            if method in d:
                ax.bar(x + offset, [100 * v for v in d[method]], 0.4, color=colour,
                       label=f"{'IFM' if method == 'ifm' else 'baseline'} "
                             f"({len(d['runs'][method])} "
                             f"seed{'s' if len(d['runs'][method]) > 1 else ''})")
        ax.set_xticks(x)
        ax.set_xticklabels([""] * 10)
        ax.set_xlim(-0.6, 9.6)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test digit acc. (%)")
        names = [f"{i} {t.rsplit('.', 1)[0]}" for i, t in enumerate(d["textures"])]
        ax.set_title(f"{name}: " + ", ".join(names[:5]) + ",\n" + ", ".join(names[5:]),
                     fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        for i, texture in enumerate(d["textures"]):
            image = texture_image(d["texture_dir"], texture, 32)
            if image is not None:
                ax.add_artist(AnnotationBbox(OffsetImage(image, zoom=0.55), (i, 0),
                                             xybox=(0, -13), xycoords=("data", "axes fraction"),
                                             boxcoords="offset points", frameon=False))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@quiet_on_closed_pipe
def main(argv=None):
    from experiment.settings import Parser
    p = Parser(prog="python -m scripts.per_texture", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders with best_digit.npz")
    p.add_argument("--confusion", action="store_true",
                   help="also print each run's texture confusion and digit recall on test")
    p.add_argument("--json", help="write every run's numbers here")
    p.add_argument("--figure", help="draw the per-texture panels into this PNG")
    p.add_argument("--mnist-dir")
    p.add_argument("--textures")
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    from data import DataError
    try:
        results = [per_texture(folder, args) for folder in args.runs]
        draws = by_draw(results)
    except (UsageError, SavedModelError, DataError, OSError, KeyError) as err:
        print(f"per_texture: error: {err}", file=sys.stderr)
        return 2
    for name in sorted(draws, key=lambda n: (n != "shared", n)):
        d = draws[name]
        print(f"{name}:")
        for i, texture in enumerate(d["textures"]):
            cells = "  ".join(f"{m} {100 * d[m][i]:5.1f}" for m in ("baseline", "ifm") if m in d)
            level = "" if d["brightness"][i] is None else f"  brightness {d['brightness'][i]:.2f}"
            print(f"  {i} {texture:<24} {cells}{level}")
    if args.confusion:
        for r in results:
            print("\n".join(confusion_text(r)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(without_machine_paths({"runs": results, "draws": draws}), f, indent=1)
    if args.figure:
        draw_figure(draws, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
