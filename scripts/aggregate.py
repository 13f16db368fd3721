"""Aggregate several run folders (seeds) into one Table 3: mean ± std over runs.

    python -m scripts.aggregate runs/baseline-seed0 runs/baseline-seed1 runs/ifm-seed0 ... \
        [--md table3.md] [--json table3.json]

Each folder must hold a finished run (report.json). Baseline runs fill the
Baseline_digit / Baseline_texture rows, --ifm runs the Ours_* rows. The std is
the sample standard deviation (ddof=1); with a single run it is undefined
(null in JSON, no ± in markdown). The markdown table shows all five rows of
the paper's Table 3 beside ours ("-" where no run fills a row), with each
row's configuration (epochs; lambda and K for IFM; flow depth and beta for
iCE; the training images when limited); the JSON has the paper's rows under
"paper_percent".
"""
import argparse
import os
import sys

from experiment import report as table3
from experiment.cli import quiet_on_closed_pipe
from experiment.config import Config
from experiment.runfolder import read_json, write_json, write_text_atomic


def mean_std(values):
    """(mean, sample std or None) of a list of numbers."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def load_reports(folders):
    """(reports, Configs (None without a config.json), epochs, devices) of finished run
    folders."""
    reports, configs, epochs, devices = [], [], set(), set()
    for folder in folders:
        path = os.path.join(folder, "report.json")
        if not os.path.exists(path):
            raise SystemExit(f"aggregate.py: error: {path} does not exist: is {folder} a "
                             "finished run folder of train.py?")
        reports.append(read_json(path))
        config_path = os.path.join(folder, "config.json")
        config = read_json(config_path) if os.path.exists(config_path) else None
        configs.append(None if config is None else Config.from_json(config["settings"]))
        if config is not None:
            epochs.add(configs[-1].epochs)
            devices.add(config.get("device", "?"))
    return reports, configs, epochs, devices


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders written by train.py")
    p.add_argument("--md", help="also write the markdown table here")
    p.add_argument("--json", help="also write the table as JSON here")
    args = p.parse_args(argv)
    reports, configs, epochs, devices = load_reports(args.runs)
    rows = table3.aggregate(reports, configs)
    markdown = table3.aggregate_markdown(rows)
    print(markdown, end="")
    if args.md:
        write_text_atomic(args.md, markdown)
    if args.json:
        write_json(args.json, {"rows": rows, "paper_percent": table3.paper_json(),
                               "epochs": epochs.pop() if len(epochs) == 1 else sorted(epochs),
                               "device": devices.pop() if len(devices) == 1 else sorted(devices)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
