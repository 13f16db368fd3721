"""Table 3's _digit rows per texture draw: how much the ten drawn textures matter.

A draw is the set of ten textures the runs trained on. Runs named
<method>-draw<N>-seed<S> (scripts/reproduce.sh draws: data seed N picks ten
textures from a pool) are draw N; the main runs (the shared set, data seed 0)
are the draw "shared". For each draw: its textures, each method's test digit
accuracy at its best-validation-digit checkpoint (Ours_digit, Baseline_digit)
per seed and their mean, the gain (IFM minus baseline, of the means), and the
epochs where the _digit checkpoints fell. Across the pool draws: the mean and
sample std of the per-draw means, beside the seed spread within a draw (the
pooled within-draw std), and where the paper's Ours_digit falls among them.
"""
import os
import re

from experiment.config import Config
from experiment.report import PAPER_TABLE3
from scripts.aggregate import mean_std

DRAW_RUN = re.compile(r"^(?P<method>baseline|ifm)-(?P<draw>draw\d+)-seed(?P<seed>\d+)$")
PAPER_OURS_DIGIT = PAPER_TABLE3["Ours_digit"]["digit"] / 100


def draw_of(row, main_names):
    """(method, draw) of a run summary, or None where the run is not in a draw."""
    match = DRAW_RUN.match(row["run"])
    if match:
        return match["method"], match["draw"]
    if row["run"] in main_names and row["method"] in ("baseline", "ifm"):
        return row["method"], "shared"
    return None


def texture_names(config):
    textures = config.get("data", {}).get("textures", {}).get("textures", [])
    return [os.path.splitext(t.get("file") or t.get("pattern", "?"))[0] for t in textures]


def draws(rows, configs, main_names):
    """{draw: {"textures", "data_seed", "epochs", method: {"seeds", "test_digit", "epoch",
    "mean", "std"}, "gain"}} from run summaries (make_results.summarize) and their
    config.json contents (by run name)."""
    out = {}
    for row in rows:
        found = draw_of(row, main_names)
        if found is None:
            continue
        method, name = found
        config = configs[row["run"]]
        draw = out.setdefault(name, {"textures": texture_names(config),
                                     "data_seed": Config.from_json(config["settings"]).data_seed})
        cell = draw.setdefault(method, {"seeds": [], "test_digit": [], "epoch": [],
                                        "epochs_run": []})
        cell["seeds"].append(row["seed"])
        cell["test_digit"].append(row["best_digit"]["test_digit_acc"])
        cell["epoch"].append(row["best_digit"]["epoch"])
        cell["epochs_run"].append(row["epochs"])
    for draw in out.values():
        for method in ("baseline", "ifm"):
            if method in draw:
                draw[method]["mean"], draw[method]["std"] = mean_std(draw[method]["test_digit"])
        draw["gain"] = (draw["ifm"]["mean"] - draw["baseline"]["mean"]
                        if "ifm" in draw and "baseline" in draw else None)
    return out


def across(table):
    """Spread over the pool draws (not the shared set) against the spread over seeds."""
    pool = [d for name, d in table.items() if name != "shared"]
    ours = [d["ifm"]["mean"] for d in pool if "ifm" in d]
    gains = [d["gain"] for d in pool if d["gain"] is not None]
    within = [d["ifm"]["std"] ** 2 for d in pool if "ifm" in d and d["ifm"]["std"] is not None]
    summary = {"draws": len(ours), "ours_digit": mean_std(ours) if ours else None,
               "gain": mean_std(gains) if gains else None,
               "ours_digit_seed_std_within_draw": (sum(within) / len(within)) ** 0.5
               if within else None,
               "paper_ours_digit": PAPER_OURS_DIGIT,
               "draws_at_or_above_paper": sum(v >= PAPER_OURS_DIGIT for v in ours)}
    if "shared" in table and "ifm" in table["shared"]:
        summary["shared_ours_digit"] = [table["shared"]["ifm"]["mean"], table["shared"]["ifm"]["std"]]
    return summary


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def ms(pair):
    if pair is None:
        return "-"
    mean, std = pair
    return pct(mean) + ("" if std is None else f" ± {pct(std)}")


def markdown(table, summary):
    names = sorted(table, key=lambda n: (n != "shared", len(n), n))
    lines = ["| draw | data seed | textures | Ours_digit (seeds; epoch of the ckpt) "
             "| Baseline_digit (seeds; epoch) | gain |", "|---|---|---|---|---|---|"]
    for name in names:
        d = table[name]
        cells = []
        for method in ("ifm", "baseline"):
            c = d.get(method)
            cells.append("-" if c is None else
                         f"{ms((c['mean'], c['std']))} ({', '.join(pct(v) for v in c['test_digit'])}"
                         f"; {', '.join(f'{e}/{n}' for e, n in zip(c['epoch'], c['epochs_run']))})")
        lines.append(f"| {name} | {d['data_seed']} | {', '.join(d['textures'])} | {cells[0]} "
                     f"| {cells[1]} | {pct(d['gain'])} |")
    s = summary
    lines += ["", f"Across the {s['draws']} pool draws: Ours_digit {ms(s['ours_digit'])} "
              f"(mean ± std of the per-draw means); gain {ms(s['gain'])}; seed std within a "
              f"draw {pct(s['ours_digit_seed_std_within_draw'])}. The paper's Ours_digit, "
              f"{pct(s['paper_ours_digit'])}, is reached by {s['draws_at_or_above_paper']} of "
              f"{s['draws']} draws.",
              "", "Epochs are given as (epoch of the _digit checkpoint)/(epochs run)."]
    return "\n".join(lines) + "\n"
