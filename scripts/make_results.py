"""Regenerate the tables under results/ from the run folders of scripts/reproduce.sh.

    python -m scripts.make_results [--runs runs] [--out results]

Writes, into --out:
- table3.md, table3.json: the main rows (runs named baseline-seed<N>, ice-cpu-k1-seed<N> and
  ifm-seed<N>), mean ± std over seeds, as aggregate.py computes them, beside
  the five rows of the paper's Table 3 as printed;
- runs.md, runs.json: every finished run, one row each: the settings it
  changes from the main IFM run, epochs, training time, the test accuracy of
  its best-validation-digit and best-validation-texture checkpoints, and the
  last epoch's information-flow estimates F;
- groups.md, groups.json: the runs grouped by setting (the run name without
  its -seed<N>), one row per group: seeds, epochs, and mean ± std over seeds
  of the validation digit accuracy that selected the _digit checkpoint and of
  the test accuracies of both checkpoints;
- runs/<name>/: the text files of every finished run (config.json,
  history.csv, evaluations.csv, report.json, report.md, train.log), with each absolute path
  cut to its file name (checksums stay; where files lay on the machine that
  made the run does not).
Folders without report.json (runs still in progress) are named and skipped.
"""
import argparse
import csv
import os
import re
import sys

from experiment.provenance import without_machine_paths
from experiment.runfolder import read_json, write_json, write_text_atomic
from experiment.settings import build_parser, old_run_settings
from scripts import aggregate

MAIN_RUN = re.compile(r"^(baseline|ifm|ice-cpu-k1)-seed\d+$")
TEXT_FILES = ("config.json", "history.csv", "evaluations.csv", "report.json", "report.md",
              "train.log")
SEED = re.compile(r"-seed(\d+)$")
# The main IFM run's settings (train.py's defaults with --ifm); a run's
# "changes" column lists the flags where it differs.
COMPARED = ("lam", "samples", "estimator", "marginal", "upsample", "pair_features", "textures",
            "texture_crops", "eval_every", "init", "optimizer", "lr", "momentum", "batch_size")
IFM_ONLY = ("lam", "samples", "estimator", "marginal", "upsample", "pair_features")
REFERENCE = {k: v for k, v in vars(build_parser().parse_args(["--ifm"])).items() if k in COMPARED}


def changes(settings):
    """Flags that set this run apart from the main IFM run, e.g. '--lam 10'."""
    settings = old_run_settings(settings)
    out = [] if settings["ifm"] else [settings["method"]]
    keys = COMPARED if settings["ifm"] else [k for k in COMPARED if k not in IFM_ONLY]
    for k in keys:
        if settings.get(k) != REFERENCE[k]:
            out.append(f"--{k.replace('_', '-')} {settings.get(k)}")
    return " ".join(out) or "(main IFM settings)"


def summarize(folder):
    config, report = read_json(os.path.join(folder, "config.json")), \
        read_json(os.path.join(folder, "report.json"))
    with open(os.path.join(folder, "history.csv"), newline="") as f:
        history = list(csv.DictReader(f))
    settings = config["settings"]
    last = history[-1]
    return {
        "run": os.path.basename(os.path.normpath(folder)),
        "method": report["method"],
        "seed": settings["seed"],
        "changes": changes(settings),
        "epochs": len(history),
        "device": config.get("device"),
        "train_minutes": round(sum(float(r["seconds"]) for r in history) / 60, 1),
        "best_digit": report["rows"]["best_digit"],
        "best_texture": report["rows"]["best_texture"],
        "last_epoch_F": {k: float(v) for k, v in last.items() if k.startswith("F_")},
    }


def copy_without_machine_paths(source, target):
    if source.endswith(".json"):
        write_json(target, without_machine_paths(read_json(source)))
    else:
        with open(source, encoding="utf-8", newline="") as f:     # keep csv's \r\n
            write_text_atomic(target, without_machine_paths(f.read()))


def mean_std(values):
    """(mean, sample std or None) of a list of fractions."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def groups(rows):
    """One entry per setting: the runs that differ only in their seed, aggregated."""
    by_name = {}
    for r in rows:
        by_name.setdefault(SEED.sub("", r["run"]), []).append(r)
    out = []
    for name, runs in by_name.items():
        cell = {"group": name, "changes": runs[0]["changes"],
                "seeds": sorted(r["seed"] for r in runs),
                "epochs": sorted({r["epochs"] for r in runs})}
        for key, which, field in (("val_digit", "best_digit", "val_digit_acc"),
                                  ("digit_ckpt_test_digit", "best_digit", "test_digit_acc"),
                                  ("digit_ckpt_test_texture", "best_digit", "test_texture_acc"),
                                  ("texture_ckpt_test_digit", "best_texture", "test_digit_acc"),
                                  ("texture_ckpt_test_texture", "best_texture",
                                   "test_texture_acc")):
            cell[key] = mean_std([r[which][field] for r in runs])
        out.append(cell)
    return out


def groups_markdown(cells):
    def ms(pair):
        mean, std = pair
        return pct(mean) + ("" if std is None else f" ± {pct(std)}")
    lines = ["| setting | changes | seeds | epochs | val digit (selects _digit) "
             "| _digit ckpt: test digit / texture | _texture ckpt: test digit / texture |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['group']} | {c['changes']} | {','.join(map(str, c['seeds']))} "
                     f"| {','.join(map(str, c['epochs']))} | {ms(c['val_digit'])} "
                     f"| {ms(c['digit_ckpt_test_digit'])} / {ms(c['digit_ckpt_test_texture'])} "
                     f"| {ms(c['texture_ckpt_test_digit'])} / "
                     f"{ms(c['texture_ckpt_test_texture'])} |")
    return "\n".join(lines) + "\n"


def pct(x):
    return f"{100 * x:.1f}"


def runs_markdown(rows):
    lines = ["| run | changes | epochs | minutes | digit ckpt: epoch, test digit / texture "
             "| texture ckpt: epoch, test digit / texture | F at the last epoch |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        d, t = r["best_digit"], r["best_texture"]
        flows = ", ".join(f"{v:.3g}" for v in r["last_epoch_F"].values()) or "-"
        lines.append(f"| {r['run']} | {r['changes']} | {r['epochs']} | {r['train_minutes']} "
                     f"| {d['epoch']}: {pct(d['test_digit_acc'])} / {pct(d['test_texture_acc'])} "
                     f"| {t['epoch']}: {pct(t['test_digit_acc'])} / {pct(t['test_texture_acc'])} "
                     f"| {flows} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs", help="folder holding the run folders (default: runs)")
    p.add_argument("--out", default="results", help="where the tables go (default: results)")
    args = p.parse_args(argv)
    if not os.path.isdir(args.runs):
        raise SystemExit(f"make_results.py: error: --runs {args.runs} is not a folder; run "
                         "scripts/reproduce.sh first or point --runs at its RUNS_DIR")
    finished, pending = [], []
    for name in sorted(os.listdir(args.runs)):
        folder = os.path.join(args.runs, name)
        if not os.path.isdir(folder):
            continue
        (finished if os.path.exists(os.path.join(folder, "report.json")) else pending).append(
            folder)
    for folder in pending:
        print(f"skipped (not finished): {folder}", file=sys.stderr)
    if not finished:
        raise SystemExit(f"make_results.py: error: no finished run in {args.runs}")

    os.makedirs(args.out, exist_ok=True)
    main_runs = [f for f in finished if MAIN_RUN.match(os.path.basename(f))]
    if main_runs:
        aggregate.main(main_runs + ["--md", os.path.join(args.out, "table3.md"),
                                    "--json", os.path.join(args.out, "table3.json")])
    rows = [summarize(f) for f in finished]
    rows.sort(key=lambda r: (not MAIN_RUN.match(r["run"]), r["method"], r["run"]))
    write_text_atomic(os.path.join(args.out, "runs.md"), runs_markdown(rows))
    write_json(os.path.join(args.out, "runs.json"), {"runs": rows})
    cells = groups(rows)
    write_text_atomic(os.path.join(args.out, "groups.md"), groups_markdown(cells))
    write_json(os.path.join(args.out, "groups.json"), {"groups": cells})
    for folder in finished:
        target = os.path.join(args.out, "runs", os.path.basename(folder))
        os.makedirs(target, exist_ok=True)
        for name in TEXT_FILES:
            if os.path.exists(os.path.join(folder, name)):
                copy_without_machine_paths(os.path.join(folder, name), os.path.join(target, name))
    print(f"wrote {args.out}/runs.md and runs.json ({len(rows)} runs)"
          + (f", table3.md and table3.json ({len(main_runs)} runs)" if main_runs else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
