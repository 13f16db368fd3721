"""Table 3's _digit rows per texture set: IFM against how texture-bound the baseline is.

A texture set is the data a run trained on apart from MNIST: its ten working
textures in their id order (their sha256), the data seed (split and crops),
the crop rule and the digit's composite. Runs with the main settings of their
method (baseline, or IFM with lambda 30, K 64, ...) that differ only in these
and in the number of epochs are grouped by texture set; per set and method, a
seed counts once: its main run (train.py's 10 epochs) where there is one,
else its longest (a 1- or 30-epoch run of a seed that has a 10-epoch run is
left out, and named).

Per set: the baseline's test texture and digit accuracy at its _digit
checkpoint (how texture-bound the set is: the paper's baseline reads 95.07 /
12.44) and IFM's (Ours_digit), mean and sample std over seeds. A set is in
the paper's regime where its baseline reads at least 95% of the textures and
at most 13% of the digits (the mean over seeds), as the paper's does. Across the sets
with both methods: the correlation of the baseline's texture accuracy with
IFM's digit accuracy, and the least-squares line through the set means read
at the paper's 95.07.

    python -m scripts.texture_sets --runs results/runs [--json F] [--md F] [--figure F.png]

The set is named after its runs: the run name without the method, the epoch
count (e1, e2, ...) and the seed ("ifm-draw5-seed0" -> "draw5",
"ifm-e1-dataseed1-seed0" -> "dataseed1"; the main runs' "ifm-seed0" -> "shared").
The figure (needs matplotlib) plots one point per set with its seed error bars
and the paper's point.
"""
import argparse
import os
import re

from experiment.cli import quiet_on_closed_pipe
from experiment.report import PAPER_TABLE3
from experiment.runfolder import read_json, write_json, write_text_atomic
from experiment.config import Config
from scripts.aggregate import mean_std

DATA_KEYS = ("textures", "data_seed", "composite", "texture_crops", "mnist_dir")
MAIN_EPOCHS = 10                                # train.py's default
PAPER_REGIME = {"baseline_texture_at_least": 0.95, "baseline_digit_at_most": 0.13}

PAPER = {"baseline_texture": PAPER_TABLE3["Baseline_digit"]["texture"] / 100,
         "baseline_digit": PAPER_TABLE3["Baseline_digit"]["digit"] / 100,
         "ours_digit": PAPER_TABLE3["Ours_digit"]["digit"] / 100}
METHOD_PART, SEED_PART = re.compile(r"^(baseline|ifm)-"), re.compile(r"(^|-)seed\d+$")
EPOCHS_PART = re.compile(r"^e\d+$")


def set_key(config):
    """(textures sha256, data seed, crops, composite) of a run's data record."""
    data = config["data"]
    rendering = data.get("rendering", {})
    return (data["textures"].get("sha256"), Config.from_json(config["settings"]).data_seed,
            rendering.get("crops", "inside"), rendering.get("composite"))


def set_name(run):
    """The run's name without its method, epoch count and seed ("shared" if nothing is left)."""
    rest = SEED_PART.sub("", METHOD_PART.sub("", run))
    parts = [p for p in rest.split("-") if p and not EPOCHS_PART.match(p)]
    return "-".join(parts) or "shared"


def in_a_set(run):
    """Whether a run (its Config) has its method's main settings apart from data and
    epochs."""
    if run.method not in ("baseline", "ifm"):
        return False
    return all(k in DATA_KEYS + ("epochs",) for k, _ in run.main_differences())


def texture_sets(folders):
    """({name: set}, [runs left out as repeated seeds]) from finished run folders."""
    sets, left_out = {}, []
    for folder in folders:
        config = read_json(os.path.join(folder, "config.json"))
        settings = Config.from_json(config["settings"])
        if not in_a_set(settings) or "textures" not in config.get("data", {}):
            continue
        run = os.path.basename(os.path.normpath(folder))
        report = read_json(os.path.join(folder, "report.json"))["rows"]["best_digit"]
        textures = config["data"]["textures"]["textures"]
        entry = sets.setdefault(set_key(config), {
            "names": set(), "data_seed": settings.data_seed,
            "textures": [os.path.splitext(t.get("file") or t.get("pattern", "?"))[0]
                         for t in textures],
            "composite": settings.composite,
            "runs": {}})
        entry["names"].add(set_name(run))
        seeds = entry["runs"].setdefault(settings.method, {})
        seed = settings.seed
        mine = {"run": run, "epochs": settings.epochs, "epoch": report["epoch"],
                "test_digit": report["test_digit_acc"], "test_texture": report["test_texture_acc"],
                "val_digit": report["val_digit_acc"]}
        kept = seeds.get(seed)
        if kept is not None:
            drop, mine = sorted((kept, mine), key=lambda r: (r["epochs"] == MAIN_EPOCHS,
                                                             r["epochs"], r["run"]))
            left_out.append(drop["run"])
        seeds[seed] = mine
    named = {}
    for entry in sets.values():
        name = min(entry.pop("names"), key=lambda n: (len(n), n))
        for method, seeds in entry["runs"].items():
            runs = [seeds[s] for s in sorted(seeds)]
            entry[method] = {"seeds": sorted(seeds), "runs": [r["run"] for r in runs],
                             "epochs": [r["epochs"] for r in runs],
                             "epoch": [r["epoch"] for r in runs],
                             "test_digit": mean_std([r["test_digit"] for r in runs]),
                             "test_texture": mean_std([r["test_texture"] for r in runs])}
        del entry["runs"]
        entry["paper_regime"] = in_paper_regime(entry)
        named[name] = entry
    return named, sorted(left_out)


def in_paper_regime(entry):
    """Whether a set's baseline is as texture-bound as the paper's (None: no baseline run)."""
    if "baseline" not in entry:
        return None
    return (entry["baseline"]["test_texture"][0] >= PAPER_REGIME["baseline_texture_at_least"]
            and entry["baseline"]["test_digit"][0] <= PAPER_REGIME["baseline_digit_at_most"])


def across(sets):
    """Correlation and line of IFM's digit on the baseline's texture accuracy over the sets."""
    points = [(s["baseline"]["test_texture"][0], s["ifm"]["test_digit"][0])
              for s in sets.values() if "baseline" in s and "ifm" in s]
    out = {"sets": len(points), "paper": PAPER, "paper_regime": PAPER_REGIME}
    if len(points) >= 3:
        n = len(points)
        mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
        sxx = sum((x - mx) ** 2 for x, _ in points)
        syy = sum((y - my) ** 2 for _, y in points)
        sxy = sum((x - mx) * (y - my) for x, y in points)
        slope = sxy / sxx
        out.update(r=sxy / (sxx * syy) ** 0.5, slope=slope,
                   ours_digit_at_paper_baseline=my + slope * (PAPER["baseline_texture"] - mx))
    return out


def pct(pair):
    mean, std = pair
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def markdown(sets, summary, left_out):
    order = sorted(sets, key=lambda n: -sets[n]["baseline"]["test_texture"][0]
                   if "baseline" in sets[n] else 1)
    lines = ["| texture set | data seed | composite | baseline texture | baseline digit "
             "| Ours_digit | Ours_digit texture | seeds (baseline; IFM) | epochs run "
             "| paper's regime |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| paper (DTD) | - | - | {100 * PAPER['baseline_texture']:.2f} "
             f"| {100 * PAPER['baseline_digit']:.2f} | {100 * PAPER['ours_digit']:.2f} "
             "| 40.41 | - | - | yes |"]
    for name in order:
        s = sets[name]
        b, i = s.get("baseline"), s.get("ifm")
        lines.append(
            f"| {name} | {s['data_seed']} | {s['composite']} "
            f"| {pct(b['test_texture']) if b else '-'} | {pct(b['test_digit']) if b else '-'} "
            f"| {pct(i['test_digit']) if i else '-'} | {pct(i['test_texture']) if i else '-'} "
            f"| {len(b['seeds']) if b else 0}; {len(i['seeds']) if i else 0} "
            f"| {'/'.join(map(str, sorted(set((b or {}).get('epochs', []))))) or '-'}; "
            f"{'/'.join(map(str, sorted(set((i or {}).get('epochs', []))))) or '-'} "
            f"| {({True: 'yes', False: 'no', None: '-'})[s['paper_regime']]} |")
    lines += ["", "Test accuracy in % at each method's _digit checkpoint, mean ± sample std "
              "over seeds; sets ordered by the baseline's texture accuracy. The paper's "
              "regime: the baseline reads at least 95% of the textures and at most 13% of "
              "the digits."]
    if "r" in summary:
        lines.append(f"Over the {summary['sets']} sets with both methods: r(baseline texture, "
                     f"Ours_digit) = {summary['r']:.2f}; the least-squares line gives "
                     f"Ours_digit {100 * summary['ours_digit_at_paper_baseline']:.1f} at the "
                     f"paper's baseline texture accuracy, 95.07.")
    if left_out:
        lines.append("Left out, as a second run of a seed (its main run, else its longest, "
                     "counts): "
                     + ", ".join(left_out) + ".")
    for name in order:
        lines.append(f"- {name}: {', '.join(sets[name]['textures'])}")
    return "\n".join(lines) + "\n"


def draw_figure(sets, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.axvspan(100 * PAPER["baseline_texture"], 100, color="0.92", zorder=0,
               label="the paper's regime (baseline texture >= 95%)")
    for name, s in sets.items():
        if "baseline" not in s or "ifm" not in s:
            continue
        (x, dx), (y, dy) = s["baseline"]["test_texture"], s["ifm"]["test_digit"]
        colour = "C1" if s["composite"] != "white" else "C0"
        ax.errorbar(100 * x, 100 * y, xerr=100 * (dx or 0), yerr=100 * (dy or 0), fmt="o",
                    color=colour, capsize=2, ms=4)
        seeds = f"{len(s['ifm']['seeds'])}/{len(s['baseline']['seeds'])}"
        ax.annotate(f"{name} ({seeds})", (100 * x, 100 * y), xytext=(4, 3),
                    textcoords="offset points", fontsize=6)
    ax.plot([100 * PAPER["baseline_texture"]], [100 * PAPER["ours_digit"]], "*", ms=12,
            color="C3", label="paper (DTD)")
    if "slope" in summary:
        xs = [min(100 * s["baseline"]["test_texture"][0] for s in sets.values()
                  if "baseline" in s and "ifm" in s), 100]
        p = summary["ours_digit_at_paper_baseline"]
        ax.plot(xs, [100 * (p + summary["slope"] * (x / 100 - PAPER["baseline_texture"]))
                     for x in xs], "--", color="0.5", lw=0.8,
                label=f"least squares over sets (r = {summary['r']:.2f})")
    ax.set_xlabel("baseline test texture accuracy at _digit (%): how texture-bound the set is")
    ax.set_ylabel("IFM test digit accuracy, Ours_digit (%)")
    ax.set_title("IFM against the strength of the texture shortcut\n(labels: set "
                 "(IFM seeds/baseline seeds); orange: another digit composite)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.texture_sets",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    p.add_argument("--json", help="write the sets and the summary here")
    p.add_argument("--md", help="write the table here")
    p.add_argument("--figure", help="draw the figure into this PNG (needs matplotlib)")
    args = p.parse_args(argv)
    if not os.path.isdir(args.runs):
        p.error(f"--runs {args.runs}: not a folder")
    folders = [os.path.join(args.runs, n) for n in sorted(os.listdir(args.runs))
               if os.path.exists(os.path.join(args.runs, n, "report.json"))]
    sets, left_out = texture_sets(folders)
    summary = across(sets)
    text = markdown(sets, summary, left_out)
    if args.md:
        write_text_atomic(args.md, text)
    else:
        print(text, end="")
    if args.json:
        write_json(args.json, {"sets": sets, "across": summary, "left_out": left_out})
    if args.figure:
        draw_figure(sets, summary, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
