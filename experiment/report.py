"""Table 3: the paper's numbers, one run's rows, and several runs aggregated.

The paper (Shen, Li, Liu 2019, Table 3) reports test accuracy of two
checkpoints per method: the one with the best validation digit accuracy
(`_digit`) and the one with the best validation texture accuracy
(`_texture`), plus one row from other work (iCE fi-RevNet, digit only).
PAPER_TABLE3 holds its numbers as printed, in %, two decimals; None where
the paper gives no number. Our iCE fi-RevNet runs (--method ice-firevnet)
fill two rows, iCE_fi-RevNet_digit and iCE_fi-RevNet_texture, chosen like
the others; the paper's one iCE number (which checkpoint it is, the paper
does not say) stands beside both. Every table here prints the paper's rows
in the paper's order, the iCE row as our two; where we have no run for a
row, our cells are "-".
"""
import numpy as np

# Test accuracy in %, exactly as printed in the paper's Table 3.
PAPER_TABLE3 = {
    "Baseline_digit": {"digit": 12.44, "texture": 95.07},
    "Baseline_texture": {"digit": 12.05, "texture": 96.44},
    "iCE fi-RevNet": {"digit": 40.01, "texture": None},
    "Ours_digit": {"digit": 54.54, "texture": 40.41},
    "Ours_texture": {"digit": 31.78, "texture": 69.00},
}
PAPER_ROW_ORDER = ("Baseline_digit", "Baseline_texture", "iCE fi-RevNet", "Ours_digit",
                   "Ours_texture")
ROW_ORDER = ("Baseline_digit", "Baseline_texture", "iCE_fi-RevNet_digit",
             "iCE_fi-RevNet_texture", "Ours_digit", "Ours_texture")     # ours, as tables print
ROW_PREFIX = {"baseline": "Baseline", "ice-firevnet": "iCE_fi-RevNet", "ifm": "Ours"}
NOT_RUN = "-"


def paper_row(name):
    """The paper's row beside one of ours: "iCE_fi-RevNet_digit" -> "iCE fi-RevNet"."""
    return "iCE fi-RevNet" if name.startswith("iCE_") else name


def paper_note():
    """One sentence on the paper columns, for the text above a table."""
    return ("The paper columns are the test accuracies of the paper's Table 3 as printed "
            "(iCE fi-RevNet is a method the paper compares with; it has one number there, "
            "digit accuracy of an unstated checkpoint, shown beside both of our iCE rows); "
            "\"-\" in our columns means no run for that row.")


def row_name(method, which):
    """("ifm", "best_digit") -> "Ours_digit"; ("ice-firevnet", ...) -> "iCE_fi-RevNet_..."."""
    return f"{ROW_PREFIX[method]}_{which.split('_', 1)[1]}"


def paper_cell(row, key):
    """The paper's number for one cell, two decimals as printed; "-" where it gives none."""
    value = PAPER_TABLE3[paper_row(row)][key]
    return NOT_RUN if value is None else f"{value:.2f}"


def _paper_cells(name):
    return f"| {paper_cell(name, 'digit')} | {paper_cell(name, 'texture')} |"


def when(row, report):
    """"3" for a checkpoint from the end of epoch 3, "3 (step 75)" for one from within it."""
    step, steps = row.get("step"), report.get("steps_per_epoch")
    return f"{row['epoch']}" + ("" if step is None or step == steps else f" (step {step})")


def run_table_markdown(report):
    """Markdown Table 3 block for a single run's report.json dict: every row of ROW_ORDER."""
    lines = ["| model | epoch | val digit | val texture | test acc(digit) | test acc(texture) "
             "| paper acc(digit) | paper acc(texture) |",
             "|---|---|---|---|---|---|---|---|"]
    ours = {row_name(report["method"], which): r for which, r in report["rows"].items()}
    for name in ROW_ORDER:
        r = ours.get(name)
        if r is None:
            cells = " | ".join([NOT_RUN] * 5)
        else:
            cells = (f"{when(r, report)} | {100 * r['val_digit_acc']:.1f} "
                     f"| {100 * r['val_texture_acc']:.1f} | {100 * r['test_digit_acc']:.1f} "
                     f"| {100 * r['test_texture_acc']:.1f}")
        lines.append(f"| {name} | {cells} " + _paper_cells(name))
    return "\n".join(lines) + "\n"


def configuration(config):
    """A run's Config as a Table 3 row shows it: epochs, and what sets its method apart."""
    parts = [f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"]
    if config.method == "ifm":
        parts.append(f"lambda {config.lam:g}, K {config.samples}"
                     + (f", {config.estimator.upper()}" if config.estimator != "jsd" else ""))
    elif config.method == "ice-firevnet":
        parts.append(f"flow depth {config.flow_depth}, beta {config.ice_beta:g}")
    if config.limit_train:
        parts.append(f"{config.limit_train} training images")
    return ", ".join(parts)


def aggregate(reports, configs=None):
    """Mean and sample std (ddof=1) of test accuracies per Table 3 row we ran.

    With a single run the std is undefined and reported as None (null).
    ``configs``: each report's run Config (or None), to name the rows' configurations
    ("" where not given).
    """
    cells, shown = {}, {}
    for report, config in zip(reports, configs or [None] * len(reports)):
        for which, r in report["rows"].items():
            name = row_name(report["method"], which)
            cells.setdefault(name, []).append((r["test_digit_acc"], r["test_texture_acc"]))
            if config is not None:
                shown.setdefault(name, set()).add(configuration(config))
    rows = {}
    for name in ROW_ORDER:
        if name not in cells:
            continue
        values = np.array(cells[name], dtype=np.float64)
        std = [float(v) for v in values.std(axis=0, ddof=1)] if len(values) > 1 else [None, None]
        rows[name] = {"runs": len(values),
                      "test_digit_acc": float(values[:, 0].mean()),
                      "test_digit_std": std[0],
                      "test_texture_acc": float(values[:, 1].mean()),
                      "test_texture_std": std[1],
                      "configuration": "; ".join(sorted(shown.get(name, ())))}
    return rows


def _mean_std(mean, std):
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def aggregate_markdown(rows):
    """Markdown Table 3: mean ± std over runs (no ± where a row has one run), and each
    row's configuration. Every row of ROW_ORDER (the paper's, iCE as our two); a row
    with no runs shows "-".
    """
    lines = ["| model | runs | acc(digit) | acc(texture) | paper acc(digit) | paper acc(texture) "
             "| configuration |",
             "|---|---|---|---|---|---|---|"]
    for name in ROW_ORDER:
        r = rows.get(name)
        if r is None:
            cells, config = " | ".join([NOT_RUN] * 3), NOT_RUN
        else:
            cells = (f"{r['runs']} | {_mean_std(r['test_digit_acc'], r['test_digit_std'])} "
                     f"| {_mean_std(r['test_texture_acc'], r['test_texture_std'])}")
            config = r.get("configuration") or NOT_RUN
        lines.append(f"| {name} | {cells} " + _paper_cells(name) + f" {config} |")
    return "\n".join(lines) + "\n"


def paper_json():
    """The paper's rows for a JSON table, in the paper's order (%, None: not given)."""
    return {name: dict(PAPER_TABLE3[name]) for name in PAPER_ROW_ORDER}
