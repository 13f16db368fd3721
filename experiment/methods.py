"""Baseline and IFM as training methods (training.Method), and the method of each --method.

One step of the Table 1 classifier (paper Eq. 5, L = L_clf - lambda * sum_l F_l):
    logits = f(x); L_clf, dlogits = softmax_cross_entropy(logits, y)
    with IFM: F = [F_l = D_l(H_l, H_{l+1})] = regularizer.forward(H);
    L = regularizer.loss(L_clf, F), Eq. (5); the regularizer hands back
    dL/dH_l = -lambda * dF/dH_l and fills D's gradients of the same loss
    backward through the classifier; one optimizer step on classifier + D

Randomness: the weights from [seed, 0] (the classifier's, then D's; --init's
redraws from [seed, 0, 1]), the IFM pair positions of step s of epoch e from
[seed, 2, e, s]. The positions of POSITIONS_AHEAD steps are drawn on the host
at once, still one generator per step, and moved to the device in one upload
per pair (training.DrawnAhead); each step takes its slice. The per-step
generators are kept, rather than one stream per epoch, so that a step's
positions depend on (seed, e, s) alone: old runs and resumed ones replay the
same samples, and a run resumed mid-epoch draws from its first step on what an
uninterrupted run draws there.
"""
import numpy as np

from ice.method import IceMethod
from ifm import IFMRegularizer
from nn import softmax_cross_entropy
from nn.flat import move_into_flat_buffers
from nn.init import fan_in_uniform_
from nn.module import Container
from training import DrawnAhead, Method, StepResult, build_optimizer, upload_joined

from .classifier import Classifier

POSITIONS_AHEAD = 64    # IFM steps whose pair positions are drawn and uploaded together


class ClassifierMethod(Method):
    """baseline and ifm: the Table 1 classifier on L_clf, with the IFM regularizer (every
    D_l) for ifm; one optimizer over both. A checkpoint holds "clf" (the classifier),
    "ifm" (D) and "opt"."""

    def __init__(self, config, train, device, plan):
        super().__init__(config, train, device, plan)
        init_rng = self.init_rng()
        self.model = Classifier(rng=init_rng, features_at=config.pair_features)
        self.regularizer = build_regularizer(config, self.model.channels, init_rng) \
            if config.ifm else None
        reinitialize(config.init, self.model, self.regularizer, config.seed)
        parts = [("clf", self.model)]
        if self.regularizer is not None:
            parts.append(("ifm", self.regularizer))
        self.trainable = Container(parts)
        self.trainable.to(device)
        self.optimizer = build_optimizer(config, move_into_flat_buffers(self.trainable))
        self.term_names = [f"F_{a}_{b}" for a, b in config.pairs] if config.ifm else []
        self.positions = DrawnAhead(plan, POSITIONS_AHEAD, self.upload_positions)

    def train_step(self, index, epoch, step):
        """One optimizer step; StepResult(L_clf, correct, [F_l], L) of device scalars."""
        x = self.train.inputs(index)
        y = self.train.digit[index]
        logits = self.model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        correct = (logits.argmax(axis=0) == y).sum()
        F_values, dfeatures, total = [], None, loss
        if self.regularizer is not None:
            positions = self.ifm_positions(epoch, step, self.model.features)
            F_values = self.regularizer.forward(self.model.features, positions=positions)
            dfeatures = self.regularizer.backward()
            total = self.regularizer.loss(loss, F_values)
        self.model.backward(dlogits, dfeatures)
        self.optimizer.step()
        return StepResult(loss, correct, F_values, total)

    def ifm_positions(self, epoch, step, features):
        """[device PairPositions per pair] of this step, from its generator [seed, 2, epoch,
        step] for H_l of these shapes: a slice of an upload of POSITIONS_AHEAD steps.

        Per pair and step the columns are (3, S_t) int32 (S_t = 2 N_t K, or G B^2 for
        InfoNCE): at batch 128, pairs (1,2), (2,3), (3,4) pre-pool, 64 steps hold
        about 38 MB with K = 64 and 260 MB with K = all.
        """
        maps = tuple(tuple(H.shape[:3]) for H in features)      # (C_l, h, w)

        def draw(t, n):
            rng = np.random.default_rng([self.config.seed, 2, epoch, t])
            return self.regularizer.draw([m + (n,) for m in maps], rng)

        return self.positions((epoch, maps), step, features[0].shape[3], draw)

    def upload_positions(self, steps):
        """[[host PairPositions per pair] per step] -> the same on the device, one upload
        per pair."""
        per_pair = [[p._replace(columns=columns) for p, columns in
                     zip(pair, upload_joined([p.columns for p in pair], self.xp, np.int32))]
                    for pair in zip(*steps)]
        return [list(step) for step in zip(*per_pair)]

    def eval_inputs(self, split, index):
        return split.inputs(index)

    def modules(self):
        modules = {"clf": (self.model, "classifier")}
        if self.regularizer is not None:
            modules["ifm"] = (self.regularizer, "IFM D")
        return modules

    def optimizers(self):
        return {"opt": self.optimizer}

    def load_checkpoint(self, groups):
        """As Method's; D_l under the names of older checkpoints are renamed first."""
        if self.regularizer is not None:
            groups = dict(groups)
            groups["ifm"] = self.regularizer.translate_old_keys(groups.get("ifm", {}))
            opt = groups.get("opt", {})
            for slot in {k.split("/")[0] for k in opt if "/" in k}:
                opt = self.regularizer.translate_old_keys(opt, f"{slot}/ifm.")
            groups["opt"] = opt
        super().load_checkpoint(groups)


def build_regularizer(config, channels, rng):
    return IFMRegularizer(channels=list(channels), pairs=[tuple(p) for p in config.pairs],
                          lam=config.lam, samples=config.samples, estimator=config.estimator,
                          upsample=config.upsample, marginal=config.marginal, rng=rng,
                          lam_d=config.lam_d)


def reinitialize(init, model, regularizer, seed):
    """Apply ``init`` over the Kaiming-normal weights every layer is built with.

    kaiming: as built. fan-in-uniform: every conv and linear layer, the
    classifier's and D's, redrawn U(+-1/sqrt(fan_in)) (nn/init.py).
    head-fan-in-uniform: only the classifier's FC head, the rest stays Kaiming.
    The redraws come from their own generator [seed, 0, 1], so the Kaiming
    weights of a run do not depend on the choice.
    """
    if init == "kaiming":
        return
    ifm = [regularizer.params] if regularizer else []    # each D_l's own (out, in) W
    targets = {"fan-in-uniform": [model.params] + ifm,
               "head-fan-in-uniform": [model.fc.params]}[init]
    rng = np.random.default_rng([seed, 0, 1])
    for params in targets:
        fan_in_uniform_(params, rng)


# The method of each --method.
METHODS = {"baseline": ClassifierMethod, "ifm": ClassifierMethod, "ice-firevnet": IceMethod}
