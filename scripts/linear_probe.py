"""Linear probes on frozen features: what does each conv block encode?

    python scripts/linear_probe.py RUN_DIR... [--which best_digit] [--out results/probes.json]

For each run's selected classifier (best_digit.npz by default) and each conv
block l, the block output H_l (after LeakyReLU, before pooling) is average-
pooled to a 4x4 grid (C_l * 16 features), standardized with statistics of the
fitting set, and a linear softmax probe is fitted on the VALIDATION split
(textures independent of digits) to predict the digit, and separately the
texture. The probe's accuracy on the TEST split is reported. Probes are
trained with Adam (lr 1e-3, batch 256, 30 epochs, weight decay 1e-4) from a
fixed seed; data come from the run's config.json, or from the usual flags /
environment variables.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nn  # noqa: E402
from data import load_shifted_mnist  # noqa: E402
from experiment.classifier import Classifier  # noqa: E402
from experiment.trainer import DeviceSplit  # noqa: E402
from nn.serialization import load_module  # noqa: E402

GRID = 4


def block_features(model, split, batch=500):
    """[(N, C_l * GRID * GRID) float32 per block] of a split, eval mode."""
    model.eval()
    out = None
    for start in range(0, split.n, batch):
        index = np.arange(start, min(start + batch, split.n))
        model.forward(split.inputs(index))
        pooled = []
        for H in model.features:
            N, C, h, w = H.shape
            g = h // GRID
            pooled.append(H.reshape(N, C, GRID, g, GRID, g).mean(axis=(3, 5)).reshape(N, -1))
        if out is None:
            out = [[] for _ in pooled]
        for acc, p in zip(out, pooled):
            acc.append(np.asarray(p, dtype=np.float32))
    return [np.concatenate(parts) for parts in out]


def fit_probe(X, y, X_test, y_test, seed=0, epochs=30, batch=256):
    mean, std = X.mean(0), X.std(0) + 1e-6
    X, X_test = (X - mean) / std, (X_test - mean) / std
    rng = np.random.default_rng(seed)
    probe = nn.Linear(X.shape[1], 10, rng=rng)
    probe.params["W"] *= 0.1
    opt = nn.Adam(probe.params, lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for s in range(0, len(X), batch):
            idx = order[s:s + batch]
            _, dlogits = nn.softmax_cross_entropy(probe.forward(X[idx]), y[idx])
            probe.backward(dlogits)
            opt.step(probe.grads)
    return float((probe.forward(X_test).argmax(1) == y_test).mean())


def probe_run(folder, which, mnist_dir, textures, cache_dir):
    config = json.load(open(os.path.join(folder, "config.json")))
    s = config["settings"]
    ds = load_shifted_mnist(mnist_dir=mnist_dir or s["mnist_dir"],
                            textures=textures or s["textures"], seed=s["data_seed"],
                            cache_dir=cache_dir)
    model = Classifier(rng=np.random.default_rng(0))
    load_module(model, os.path.join(folder, f"{which}.npz"))
    val = DeviceSplit(ds.val, ds.mean, ds.std, np)
    test = DeviceSplit(ds.test, ds.mean, ds.std, np)
    F_val, F_test = block_features(model, val), block_features(model, test)
    rows = []
    for layer, (Xv, Xt) in enumerate(zip(F_val, F_test), start=1):
        rows.append({"layer": layer, "features": int(Xv.shape[1]),
                     "digit": fit_probe(Xv, ds.val.digit, Xt, ds.test.digit),
                     "texture": fit_probe(Xv, ds.val.texture, Xt, ds.test.texture)})
        print(f"{folder} H_{layer}: digit {rows[-1]['digit']:.3f} "
              f"texture {rows[-1]['texture']:.3f}", file=sys.stderr)
    return {"run": folder, "method": config["method"], "checkpoint": which, "layers": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--which", choices=("best_digit", "best_texture"), default="best_digit")
    p.add_argument("--mnist-dir")
    p.add_argument("--textures")
    p.add_argument("--cache-dir")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    results = [probe_run(r, args.which, args.mnist_dir, args.textures, args.cache_dir)
               for r in args.runs]
    print("| run | method | layer | features | probe acc(digit) | probe acc(texture) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for row in r["layers"]:
            print(f"| {os.path.basename(os.path.normpath(r['run']))} | {r['method']} "
                  f"| H_{row['layer']} | {row['features']} | {100 * row['digit']:.1f} "
                  f"| {100 * row['texture']:.1f} |")
    print()
    print(summary_markdown(results), end="")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def summary_markdown(results):
    """Per method and layer: mean ± sample std over the runs (no ± for one run)."""
    def cell(values):
        mean = 100 * float(np.mean(values))
        return f"{mean:.1f}" if len(values) == 1 else \
            f"{mean:.1f} ± {100 * float(np.std(values, ddof=1)):.1f}"
    methods = sorted({r["method"] for r in results})
    lines = ["| method | runs | layer | probe acc(digit) | probe acc(texture) |",
             "|---|---|---|---|---|"]
    for method in methods:
        runs = [r for r in results if r["method"] == method]
        for i, row in enumerate(runs[0]["layers"]):
            digit = [r["layers"][i]["digit"] for r in runs]
            texture = [r["layers"][i]["texture"] for r in runs]
            lines.append(f"| {method} | {len(runs)} | H_{row['layer']} | {cell(digit)} "
                         f"| {cell(texture)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
