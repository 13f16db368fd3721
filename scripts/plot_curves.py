"""Training curves from run folders: validation accuracy and information flow.

    python scripts/plot_curves.py RUN_DIR... --out results/

Writes curves_accuracy.png (validation digit and texture accuracy per epoch,
one line per run) and, when any run used --ifm, curves_information_flow.png
(the JSD estimate F of each layer pair per epoch, mean over the epoch's
steps). Needs matplotlib (an optional extra: pip install matplotlib).
"""
import argparse
import csv
import os
import sys


def read_history(folder):
    path = os.path.join(folder, "history.csv")
    if not os.path.exists(path):
        raise SystemExit(f"plot_curves.py: error: {path} does not exist: is {folder} a run "
                         "folder of train.py?")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="results")
    args = p.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot_curves.py: error: matplotlib is not installed "
                         "(pip install matplotlib); it is only needed for plots")
    histories = {os.path.basename(os.path.normpath(r)): read_history(r) for r in args.runs}
    os.makedirs(args.out, exist_ok=True)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, rows in histories.items():
        epochs = [int(r["epoch"]) for r in rows]
        style = "-" if name.startswith("ifm") else "--"
        axes[0].plot(epochs, [100 * float(r["val_digit_acc"]) for r in rows], style, label=name)
        axes[1].plot(epochs, [100 * float(r["val_texture_acc"]) for r in rows], style, label=name)
    for ax, title in zip(axes, ("validation digit accuracy (%)", "validation texture accuracy (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "curves_accuracy.png"), dpi=120)
    written = ["curves_accuracy.png"]

    flows = {n: rows for n, rows in histories.items() if rows and "F_1_2" in rows[0]}
    if flows:
        pairs = [k for k in next(iter(flows.values()))[0] if k.startswith("F_")]
        fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.5), squeeze=False)
        for ax, pair in zip(axes[0], pairs):
            for name, rows in flows.items():
                ax.plot([int(r["epoch"]) for r in rows], [float(r[pair]) for r in rows],
                        label=name)
            ax.set_title(f"F (JSD bound) for pair {pair[2:].replace('_', '-')}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "curves_information_flow.png"), dpi=120)
        written.append("curves_information_flow.png")
    print("wrote " + ", ".join(os.path.join(args.out, w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
