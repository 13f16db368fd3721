"""The tables of results/ from the run folders of scripts/reproduce.sh.

    python -m scripts.make_results                    # runs/ -> runs/results/ (a draft)
    python -m scripts.make_results --out results      # regenerate the committed tables
    python -m scripts.make_results --runs results/runs --out /tmp/t   # from the committed copies

With its defaults it reads runs/ and writes runs/results/, so it never changes
committed files; --out results updates them. Writes, into --out:
- table3.md, table3.json: the main rows (runs named baseline-seed<N>,
  ice-cpu-k2-seed<N> and ifm-seed<N> whose settings are their group's in
  scripts/reproduce.sh; a folder of that name made otherwise, a quick try say,
  is named on stderr and left out), mean ± std over seeds, as aggregate.py
  computes them, beside the five rows of the paper's Table 3 as printed;
- runs.md, runs.json: every finished run, one row each: the settings it
  changes from the main IFM run, epochs, training time, the test accuracy of
  its best-validation-digit and best-validation-texture checkpoints, and the
  last epoch's information-flow estimates F;
- groups.md, groups.json: the runs grouped by setting (the run name without
  its -seed<N>), one row per group: seeds, epochs, and mean ± std over seeds
  of the validation digit accuracy that selected the _digit checkpoint and of
  the test accuracies of both checkpoints;
- texture_sets.md, texture_sets.json: the _digit rows per texture set (the
  data a run trained on), with how texture-bound each set's baseline is, as
  texture_sets.py computes them;
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

from experiment.cli import quiet_on_closed_pipe
from experiment.provenance import without_machine_paths
from experiment.runfolder import read_json, write_json, write_text_atomic
from experiment.config import ICE_ONLY, IFM_ONLY, Config
from experiment.settings import parse
from scripts import aggregate, texture_sets

MAIN_RUN = re.compile(r"^(baseline|ifm|ice-cpu-k2)-seed\d+$")
# The train.py flags of each main group (scripts/reproduce.sh main, more-seeds, ice-cpu).
MAIN_FLAGS = {"baseline": ["--epochs", "10"], "ifm": ["--epochs", "10", "--ifm"],
              "ice-cpu-k2": ["--method", "ice-firevnet", "--flow-depth", "2",
                             "--limit-train", "16000", "--epochs", "3"]}
TEXT_FILES = ("config.json", "history.csv", "evaluations.csv", "report.json", "report.md",
              "train.log", "diverged")
DIVERGED = "diverged"           # scripts/reproduce.sh marks a run whose loss became NaN or inf
WHERE_DIVERGED = re.compile(r"NaN or inf at epoch (\d+), step (\d+)")
SEED = re.compile(r"-seed(\d+)$")
# The main IFM run's settings (train.py's defaults with --ifm); a run's
# "changes" column lists the flags where it differs.
COMPARED = ("lam", "lam_d", "samples", "estimator", "marginal", "upsample", "pair_features", "textures",
            "texture_crops", "composite", "eval_every", "init", "optimizer", "lr", "momentum", "batch_size",
            "limit_train", "data_seed", "flow_depth", "ice_beta", "ice_labels")
REFERENCE = Config(method="ifm")


def changes(run):
    """Flags that set this run (its Config) apart from the main IFM run, e.g. '--lam 10'."""
    out = [] if run.ifm else [run.method]
    own = () if run.ifm else IFM_ONLY       # flags of another method are not shown
    own += () if run.method == "ice-firevnet" else ICE_ONLY
    for k in COMPARED:
        if k not in own and getattr(run, k) != getattr(REFERENCE, k):
            out.append(f"--{k.replace('_', '-')} {getattr(run, k)}")
    return " ".join(out) or "(main IFM settings)"


def is_main_run(folder):
    """Whether ``folder`` is named as a main run and holds one (its group's settings)."""
    match = MAIN_RUN.match(os.path.basename(os.path.normpath(folder)))
    if not match:
        return False
    run = Config.from_json(read_json(os.path.join(folder, "config.json"))["settings"])
    diff = parse(MAIN_FLAGS[match.group(1)] + ["--seed", str(run.seed)]).differences(run)
    if diff:
        print(f"not in Table 3: {folder} is named as a main run but was made with other "
              f"settings ({', '.join(sorted(diff))})", file=sys.stderr)
    return not diff


def summarize(folder):
    config, report = read_json(os.path.join(folder, "config.json")), \
        read_json(os.path.join(folder, "report.json"))
    with open(os.path.join(folder, "history.csv"), newline="") as f:
        history = list(csv.DictReader(f))
    run = Config.from_json(config["settings"])
    last = history[-1]
    return {
        "run": os.path.basename(os.path.normpath(folder)),
        "method": report["method"],
        "seed": run.seed,
        "changes": changes(run),
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
            cell[key] = aggregate.mean_std([r[which][field] for r in runs])
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


def summarize_diverged(folder):
    """{run, changes, epoch, step} of a run whose loss became NaN or inf (its train.log
    names the epoch and step; None where it does not)."""
    run = Config.from_json(read_json(os.path.join(folder, "config.json"))["settings"])
    with open(os.path.join(folder, "train.log"), encoding="utf-8") as f:
        found = WHERE_DIVERGED.findall(f.read())
    epoch, step = (int(v) for v in found[-1]) if found else (None, None)
    return {"run": os.path.basename(os.path.normpath(folder)), "changes": changes(run),
            "epoch": epoch, "step": step}


def runs_markdown(rows, diverged=()):
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
    if diverged:
        lines += ["", "Runs whose loss became NaN or inf (stopped there, no checkpoint picked):",
                  "", "| run | changes | where |", "|---|---|---|"]
        lines += [f"| {d['run']} | {d['changes']} | epoch {d['epoch']}, step {d['step']} |"
                  for d in diverged]
    return "\n".join(lines) + "\n"


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs", help="folder holding the run folders (default: runs)")
    p.add_argument("--out", default=os.path.join("runs", "results"),
                   help="where the tables go (default: runs/results; --out results updates "
                        "the committed ones)")
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
    diverged = [f for f in pending if os.path.exists(os.path.join(f, DIVERGED))]
    for folder in pending:
        if folder not in diverged:
            print(f"skipped (not finished): {folder}", file=sys.stderr)
    if not finished:
        raise SystemExit(f"make_results.py: error: no finished run in {args.runs}")

    os.makedirs(args.out, exist_ok=True)
    main_runs = [f for f in finished if is_main_run(f)]
    if main_runs:
        aggregate.main(main_runs + ["--md", os.path.join(args.out, "table3.md"),
                                    "--json", os.path.join(args.out, "table3.json")])
    rows = [summarize(f) for f in finished]
    main_names = {os.path.basename(f) for f in main_runs}
    rows.sort(key=lambda r: (r["run"] not in main_names, r["method"], r["run"]))
    stopped = [summarize_diverged(f) for f in diverged]
    write_text_atomic(os.path.join(args.out, "runs.md"), runs_markdown(rows, stopped))
    write_json(os.path.join(args.out, "runs.json"), {"runs": rows, "diverged": stopped})
    sets, left_out = texture_sets.texture_sets(finished)
    if sets:
        summary = texture_sets.across(sets)
        write_text_atomic(os.path.join(args.out, "texture_sets.md"),
                          texture_sets.markdown(sets, summary, left_out))
        write_json(os.path.join(args.out, "texture_sets.json"),
                   {"sets": sets, "across": summary, "left_out": left_out})
    cells = groups(rows)
    write_text_atomic(os.path.join(args.out, "groups.md"), groups_markdown(cells))
    write_json(os.path.join(args.out, "groups.json"), {"groups": cells})
    for folder in finished + diverged:
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
