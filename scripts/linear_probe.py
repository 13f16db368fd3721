"""Linear probes on frozen features: what does each conv block encode?

    python -m scripts.linear_probe RUN_DIR... [--which best_digit|best_texture|untrained]
                                   [--fresh-head] [--out results/probes.json]

For each run's selected classifier (best_digit.npz by default) and each conv
block l, the block output H_l (after LeakyReLU, before pooling) is average-
pooled to a 4x4 grid (C_l * 16 features); the last "layer", head_input, is
the 512 inputs of the FC head itself (H_4 max-pooled and flattened). Each is
standardized with statistics of the fitting set, and a linear softmax probe
is fitted on the VALIDATION split (textures independent of digits) to predict
the digit, and separately the texture. The probe's accuracy on the TEST split
is reported. Probes are trained with Adam (lr 1e-3, batch 256, 30 epochs,
weight decay 1e-4) from a fixed seed; data come from the run's config.json,
or from the usual flags / environment variables.

Controls:
- ``--which untrained``: the run's network at initialization, built by
  experiment.trainer.Trainer from the run's settings (weights from
  default_rng([seed, 0]), then the run's --init), never trained; D is drawn
  after the classifier, so baseline-seedS and ifm-seedS give the same
  result. Its batch norms' fresh running statistics (mean 0, var 1)
  normalize nothing, and batch statistics would make an image's features
  depend on its batch; so the running statistics are set, weights untouched,
  to the mean of the training-mode batch statistics over the VALIDATION split
  in batches of 500 (momentum 1/k at batch k): what training's running
  averages would reach for these weights. The validation split is the
  probes' fitting split, so the test split stays unseen (a trained run's
  statistics come from train batches instead).
- ``--fresh-head``: a new linear softmax head, fitted like the probes on the
  frozen head inputs (N, 512) of the TRAIN split with digit labels, which
  equal the texture labels there: it may use either cue. Its test accuracy
  against the digit and against the texture says which cue a head trained
  on these features picks.

Output JSON: one entry per run, {"run", "method", "checkpoint" (best_digit,
best_texture or untrained), "checkpoint_sha256" (of the bytes loaded; null
for untrained), "data_cache_key" (the dataset's content key), "layers": [{"layer"
(1..4 or "head_input"), "features", "digit", "texture"}], and with
--fresh-head "fresh_head": {"fit_split": "train", "features", "digit",
"texture"}}.
"""
import argparse
import hashlib
import io
import json
import os
import sys

import numpy as np

import nn
from experiment.classifier import Classifier
from experiment.cli import UsageError, quiet_on_closed_pipe
from experiment.config import Config
from experiment.dataset import DeviceSplit, data_sources, load_dataset
from experiment.saved_model import split_record
from experiment.trainer import Trainer
from nn.fast.pooling import maxpool2x2_forward
from nn.serialization import load_state_into

GRID = 4
BATCH = 500


def split_features(model, split, blocks=True, batch=BATCH):
    """Eval-mode features of a split, float32: [(N, C_l * GRID * GRID) per block] (when
    ``blocks``) followed by the head inputs (N, 512)."""
    model.eval()
    out = None
    for start in range(0, split.n, batch):
        index = np.arange(start, min(start + batch, split.n))
        model.forward(split.inputs(index))
        feats = []
        for H in model.features if blocks else []:     # (C, h, w, N), batch last
            C, h, w, N = H.shape
            g = h // GRID
            feats.append(H.reshape(C, GRID, g, GRID, g, N).mean(axis=(2, 4)).reshape(-1, N).T)
        H = model.features[-1]
        feats.append(maxpool2x2_forward(H)[0].reshape(-1, H.shape[3]).T)
        if out is None:
            out = [[] for _ in feats]
        for acc, f in zip(out, feats):
            acc.append(np.asarray(f, dtype=np.float32))
    return [np.concatenate(parts) for parts in out]


def fit_probe(X, y, X_test, seed=0, epochs=30, batch=256):
    """Predicted classes (N_test,) of a linear softmax probe fitted on X (N, D), y (N,).

    The probe is an nn.Linear, batch last: it reads the transposed rows (D, batch)."""
    mean, std = X.mean(0), X.std(0) + 1e-6
    X, X_test = (X - mean) / std, (X_test - mean) / std
    rng = np.random.default_rng(seed)
    probe = nn.Linear(X.shape[1], 10, rng=rng)
    probe.params["W"] *= 0.1
    opt = nn.Adam(nn.move_into_flat_buffers(probe), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for s in range(0, len(X), batch):
            idx = order[s:s + batch]
            _, dlogits = nn.softmax_cross_entropy(probe.forward(X[idx].T), y[idx])
            probe.backward(dlogits)
            opt.step(probe.grads)
    return probe.forward(X_test.T).argmax(0)


def accuracy(pred, labels):
    return float((pred == labels).mean())


def batch_norms(module):
    """Every BatchNorm2d inside ``module``, depth first."""
    found = [module] if isinstance(module, nn.BatchNorm2d) else []
    for child in module.children():
        found += batch_norms(child)
    return found


def estimate_batchnorm_statistics(model, split, batch=BATCH):
    """Running statistics := mean over the batches of ``split`` of the training-mode batch
    statistics (cumulative average: momentum 1/k at batch k). Weights are not changed."""
    norms = batch_norms(model)
    momenta = [bn.momentum for bn in norms]
    model.train()
    for k, start in enumerate(range(0, split.n, batch), start=1):
        for bn in norms:
            bn.momentum = 1.0 / k
        model.forward(split.inputs(np.arange(start, min(start + batch, split.n))))
    for bn, m in zip(norms, momenta):
        bn.momentum = m
    model.eval()


def load_checkpoint(model, path):
    """Load the .npz at ``path`` into ``model``; returns the sha256 (hex) of the bytes loaded."""
    with open(path, "rb") as f:
        raw = f.read()
    with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
        state, _ = split_record({k: arrays[k] for k in arrays.files})
        load_state_into(model.state_dict(), state, path)
    return hashlib.sha256(raw).hexdigest()


def probed_model(folder, which, config, ds, val):
    """(Classifier with H_l read before pooling, sha256 of its checkpoint file or None);
    ``config``: the run's Config."""
    model = Classifier(rng=np.random.default_rng(0))
    if which != "untrained":
        return model, load_checkpoint(model, os.path.join(folder, f"{which}.npz"))
    load_state_into(model.state_dict(), Trainer(config, ds, "cpu").method.model.state_dict(),
                    "untrained")
    estimate_batchnorm_statistics(model, val)
    return model, None


def layer_name(layer):
    return f"H_{layer}" if isinstance(layer, int) else layer


def probe_run(folder, which, fresh_head, locations):
    """``locations``: the --mnist-dir / --textures / --cache-dir flags (None where not
    given; dataset.data_sources)."""
    config = json.load(open(os.path.join(folder, "config.json")))
    run = Config.from_json(config["settings"])
    ds = load_dataset(run, data_sources(locations, config))
    val = DeviceSplit(ds.val, ds.mean, ds.std, np)
    test = DeviceSplit(ds.test, ds.mean, ds.std, np)
    model, sha256 = probed_model(folder, which, run, ds, val)
    F_val, F_test = split_features(model, val), split_features(model, test)
    rows = []
    for layer, Xv, Xt in zip([*range(1, len(F_val)), "head_input"], F_val, F_test):
        rows.append({"layer": layer, "features": int(Xv.shape[1]),
                     "digit": accuracy(fit_probe(Xv, ds.val.digit, Xt), ds.test.digit),
                     "texture": accuracy(fit_probe(Xv, ds.val.texture, Xt), ds.test.texture)})
        print(f"{folder} {layer_name(layer)}: digit {rows[-1]['digit']:.3f} "
              f"texture {rows[-1]['texture']:.3f}", file=sys.stderr)
    result = {"run": folder, "method": config["method"], "checkpoint": which,
              "checkpoint_sha256": sha256, "data_cache_key": ds.provenance["cache_key"],
              "layers": rows}
    if fresh_head:
        train = DeviceSplit(ds.train, ds.mean, ds.std, np)
        (X_train,) = split_features(model, train, blocks=False)
        pred = fit_probe(X_train, ds.train.digit, F_test[-1])
        result["fresh_head"] = {"fit_split": "train", "features": int(X_train.shape[1]),
                                "digit": accuracy(pred, ds.test.digit),
                                "texture": accuracy(pred, ds.test.texture)}
        print(f"{folder} fresh head (fitted on train): digit "
              f"{result['fresh_head']['digit']:.3f} texture "
              f"{result['fresh_head']['texture']:.3f}", file=sys.stderr)
    return result


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--which", choices=("best_digit", "best_texture", "untrained"),
                   default="best_digit",
                   help="checkpoint to probe; untrained: the run's initial weights")
    p.add_argument("--fresh-head", action="store_true",
                   help="also fit a new linear head on the train split's head inputs and "
                        "report its test digit and texture accuracy")
    p.add_argument("--mnist-dir")
    p.add_argument("--textures")
    p.add_argument("--cache-dir")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        results = [probe_run(r, args.which, args.fresh_head, vars(args)) for r in args.runs]
    except UsageError as err:
        print(f"linear_probe.py: {err}", file=sys.stderr)
        return 2
    print("| run | method | layer | features | probe acc(digit) | probe acc(texture) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for row in r["layers"]:
            print(f"| {os.path.basename(os.path.normpath(r['run']))} | {r['method']} "
                  f"| {layer_name(row['layer'])} | {row['features']} | {100 * row['digit']:.1f} "
                  f"| {100 * row['texture']:.1f} |")
    if args.fresh_head:
        print()
        print("| run | method | fresh head (fit on train) acc(digit) | acc(texture) |")
        print("|---|---|---|---|")
        for r in results:
            print(f"| {os.path.basename(os.path.normpath(r['run']))} | {r['method']} "
                  f"| {100 * r['fresh_head']['digit']:.1f} "
                  f"| {100 * r['fresh_head']['texture']:.1f} |")
    print()
    print(summary_markdown(results), end="")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def summary_markdown(results):
    """Per method and layer: mean ± sample std over the runs (no ± for one run); then the
    fresh heads' test accuracies, when fitted."""
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
            lines.append(f"| {method} | {len(runs)} | {layer_name(row['layer'])} "
                         f"| {cell(digit)} | {cell(texture)} |")
    if "fresh_head" in results[0]:
        lines += ["", "| method | runs | fresh head (fit on train) acc(digit) | acc(texture) |",
                  "|---|---|---|---|"]
        for method in methods:
            heads = [r["fresh_head"] for r in results if r["method"] == method]
            lines.append(f"| {method} | {len(heads)} | {cell([h['digit'] for h in heads])} "
                         f"| {cell([h['texture'] for h in heads])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
