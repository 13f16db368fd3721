"""Training curves from run folders: validation accuracy and information flow.

    python -m scripts.plot_curves RUN_DIR... [--out runs/results]

Writes curves_accuracy.png (validation digit and texture accuracy per epoch)
and, when any run used --ifm, curves_information_flow.png (the JSD estimate F
of each layer pair per epoch, mean over the epoch's steps). Runs whose folder
names differ only in a trailing -seed<N> form one group: its mean is drawn as
a line and its range over seeds as a band. With its default --out it writes
under runs/ (not committed); --out results replaces the committed curves.
Needs matplotlib (an optional extra: pip install -r requirements-plots.txt).
"""
import argparse
import csv
import os
import re
import sys

from experiment.cli import quiet_on_closed_pipe


def read_history(folder):
    path = os.path.join(folder, "history.csv")
    if not os.path.exists(path):
        raise SystemExit(f"plot_curves.py: error: {path} does not exist: is {folder} a run "
                         "folder of train.py?")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default=os.path.join("runs", "results"),
                   help="where the PNGs go (default: runs/results)")
    args = p.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot_curves.py: error: matplotlib is not installed "
                         "(pip install matplotlib); it is only needed for plots")
    groups = {}
    for r in args.runs:
        name = re.sub(r"-seed\d+$", "", os.path.basename(os.path.normpath(r)))
        groups.setdefault(name, []).append(read_history(r))
    os.makedirs(args.out, exist_ok=True)

    def draw(ax, name, histories, column, scale=1.0, style="-"):
        """Mean over the group's runs per epoch, and a min-max band when there are several."""
        epochs = min(len(h) for h in histories)
        x = list(range(1, epochs + 1))
        values = [[scale * float(h[e][column]) for h in histories] for e in range(epochs)]
        label = name if len(histories) == 1 else f"{name} ({len(histories)} seeds)"
        line, = ax.plot(x, [sum(v) / len(v) for v in values], style, label=label)
        if len(histories) > 1:
            ax.fill_between(x, [min(v) for v in values], [max(v) for v in values],
                            color=line.get_color(), alpha=0.2)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, histories in groups.items():
        style = "-" if name.startswith("ifm") else "--"
        draw(axes[0], name, histories, "val_digit_acc", 100, style)
        draw(axes[1], name, histories, "val_texture_acc", 100, style)
    for ax, title in zip(axes, ("validation digit accuracy (%)", "validation texture accuracy (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "curves_accuracy.png"), dpi=120)
    written = ["curves_accuracy.png"]

    flows = {n: hs for n, hs in groups.items() if hs[0] and "F_1_2" in hs[0][0]}
    if flows:
        pairs = [k for k in next(iter(flows.values()))[0][0] if k.startswith("F_")]
        fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.5), squeeze=False)
        for ax, pair in zip(axes[0], pairs):
            for name, histories in flows.items():
                draw(ax, name, histories, pair)
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
