"""Table 3: the paper's numbers, one run's rows, and several runs aggregated.

The paper (Shen, Li, Liu 2019, Table 3) reports test accuracy of two
checkpoints per method: the one with the best validation digit accuracy and
the one with the best validation texture accuracy. Ours_digit and Ours_texture
are the paper's printed numbers; for the baseline the paper's text gives only
"about 12% digit, about 95% texture", shown as approximate.
"""
import numpy as np

PAPER_TABLE3 = {
    "Baseline_digit": {"digit": 0.12, "texture": 0.95, "approx": True},
    "Baseline_texture": {"digit": 0.12, "texture": 0.95, "approx": True},
    "Ours_digit": {"digit": 0.545, "texture": 0.404, "approx": False},
    "Ours_texture": {"digit": 0.318, "texture": 0.690, "approx": False},
}
ROW_ORDER = ("Baseline_digit", "Baseline_texture", "Ours_digit", "Ours_texture")


def row_name(method, which):
    """("ifm", "best_digit") -> "Ours_digit"."""
    prefix = "Ours" if method == "ifm" else "Baseline"
    return f"{prefix}_{which.split('_', 1)[1]}"


def paper_cell(row, key):
    entry = PAPER_TABLE3[row]
    return ("~" if entry["approx"] else "") + f"{100 * entry[key]:.1f}"


def run_table_markdown(report):
    """Markdown Table 3 block for a single run's report.json dict."""
    lines = ["| model | epoch | val digit | val texture | test acc(digit) | test acc(texture) "
             "| paper acc(digit) | paper acc(texture) |",
             "|---|---|---|---|---|---|---|---|"]
    for which, r in report["rows"].items():
        name = row_name(report["method"], which)
        lines.append(f"| {name} | {r['epoch']} | {100 * r['val_digit_acc']:.1f} "
                     f"| {100 * r['val_texture_acc']:.1f} | {100 * r['test_digit_acc']:.1f} "
                     f"| {100 * r['test_texture_acc']:.1f} | {paper_cell(name, 'digit')} "
                     f"| {paper_cell(name, 'texture')} |")
    return "\n".join(lines) + "\n"


def aggregate(reports):
    """Mean and sample std (ddof=1) of test accuracies per Table 3 row.

    With a single run the std is undefined and reported as None (null).
    """
    cells = {}
    for report in reports:
        for which, r in report["rows"].items():
            cells.setdefault(row_name(report["method"], which), []).append(
                (r["test_digit_acc"], r["test_texture_acc"]))
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
                      "test_texture_std": std[1]}
    return rows


def _mean_std(mean, std):
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def aggregate_markdown(rows):
    """Markdown Table 3: mean ± std over runs (no ± where a row has one run)."""
    lines = ["| model | runs | acc(digit) | acc(texture) | paper acc(digit) | paper acc(texture) |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['runs']} "
                     f"| {_mean_std(r['test_digit_acc'], r['test_digit_std'])} "
                     f"| {_mean_std(r['test_texture_acc'], r['test_texture_std'])} "
                     f"| {paper_cell(name, 'digit')} | {paper_cell(name, 'texture')} |")
    return "\n".join(lines) + "\n"
