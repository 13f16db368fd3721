"""The training loop of the shiftedMNIST experiment.

One step (paper Eq. 5, L = L_clf - lambda * sum_l F_l):
    logits = f(x); L_clf, dlogits = softmax_cross_entropy(logits, y)
    with IFM: F = [F_l = D_l(H_l, H_{l+1})] = regularizer.forward(H);
    L = regularizer.loss(L_clf, F), Eq. (5); the regularizer hands back
    dL/dH_l = -lambda * dF/dH_l and fills D's gradients of the same loss
    backward through the classifier; one optimizer step on classifier + D

Randomness is derived from the seed and the position in training, never from
a stream that must be carried along: weights from [seed, 0], the shuffle of
epoch e from [seed, 1, e], the IFM sampling of step s of epoch e from
[seed, 2, e, s]. So a run interrupted anywhere and resumed from its checkpoint
replays exactly what an uninterrupted run does.

The IFM pair positions of POSITIONS_AHEAD steps are drawn on the host at
once (``ifm_positions``), still one generator [seed, 2, e, s] per step, and
moved to the device in one upload per pair (ifm.sampling.upload_positions); each
step takes its slice. The per-step generators are kept, rather than one stream per
epoch, so that a step's positions depend on (seed, e, s) alone: old runs and
resumed ones replay the same samples, and a run resumed mid-epoch draws from
its first step on what an uninterrupted run draws there.

Device discipline: data, labels and running metrics stay on the device; the
host reads them only when a progress line is shown and at the end of an epoch.
"""
import shlex
import time

import numpy as np

from nn import SGD, Adam, softmax_cross_entropy
from nn.optim import Adamax
from nn.backend import to_numpy, xp_for
from nn.flat import move_into_flat_buffers
from nn.init import fan_in_uniform_
from nn.module import Container

from nn.serialization import state_to_numpy

from .classifier import Classifier
from .progress import EpochProgress, format_seconds
from .runfolder import with_best
from .saved_model import normalization_arrays, normalize
from .settings import command

EVAL_BATCH = 1000
POSITIONS_AHEAD = 64    # IFM steps whose pair positions are drawn and uploaded together
NO_STEP = 2 ** 62       # "no non-finite loss yet" in EpochAccumulator.first_bad_step


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf at ``epoch``, ``step`` (1-based)."""

    def __init__(self, epoch, step):
        super().__init__(f"the loss became NaN or inf at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


class DeviceSplit:
    """One split on the device: uint8 images, labels, and the normalization."""

    def __init__(self, split, mean, std, xp, limit=None):
        n = len(split.digit) if limit is None else min(limit, len(split.digit))
        self.n = n
        self.images = xp.asarray(split.images[:n])
        self.digit = xp.asarray(split.digit[:n].astype(np.int64))
        self.texture = xp.asarray(split.texture[:n].astype(np.int64))
        self.mean, self.inv_std = normalization_arrays(mean, std, xp)

    def inputs(self, index):
        """x = (image / 255 - mean) / std, float32 (3, H, W, B), for the rows in ``index``.

        The one conversion from the (B, 3, H, W) images to the library's
        batch-last layout (nn/layout.py) happens here, fused with the cast.
        """
        return normalize(self.images[index], self.mean, self.inv_std)


def accuracies(model, inputs, split, xp, progress=None):
    """(digit accuracy, texture accuracy) of ``model`` on ``split`` in eval mode, batches of
    EVAL_BATCH; ``inputs(index)`` gives the model's x for the rows in ``index``;
    ``progress(done, total)`` (host numbers only) after each batch."""
    training = model.training
    model.eval()
    digit_ok = xp.zeros((), dtype=xp.int64)
    texture_ok = xp.zeros((), dtype=xp.int64)
    for start in range(0, split.n, EVAL_BATCH):
        index = xp.arange(start, min(start + EVAL_BATCH, split.n))
        pred = model.forward(inputs(index)).argmax(axis=0)
        digit_ok += (pred == split.digit[index]).sum()
        texture_ok += (pred == split.texture[index]).sum()
        if progress is not None:
            progress(min(start + EVAL_BATCH, split.n), split.n)
    model.train(training)
    return float(digit_ok) / split.n, float(texture_ok) / split.n


def build_optimizer(config, flat):
    """The optimizer of config over ``flat``, a model's parameters moved into flat buffers
    (nn.flat.move_into_flat_buffers)."""
    if config.optimizer == "sgd":
        return SGD(flat, lr=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay)
    if config.optimizer == "adamax":
        return Adamax(flat, lr=config.lr)
    return Adam(flat, lr=config.lr, weight_decay=config.weight_decay)


def build_regularizer(config, channels, rng):
    from ifm import IFMRegularizer
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


class Trainer:
    """Owns the model, D, the optimizer and the data of one run on one device."""

    def __init__(self, config, dataset, device):
        self.config, self.device = config, device
        self.xp = xp_for(device)
        self.build(dataset, np.random.default_rng([config.seed, 0]))
        self.load_splits(dataset)

    def build(self, dataset, init_rng):
        """The models and optimizers, weights drawn from ``init_rng``, on the device."""
        config = self.config
        self.model = Classifier(rng=init_rng, features_at=config.pair_features)
        self.regularizer = build_regularizer(config, self.model.channels, init_rng) \
            if config.ifm else None
        reinitialize(config.init, self.model, self.regularizer, config.seed)
        parts = [("clf", self.model)]
        if self.regularizer is not None:
            parts.append(("ifm", self.regularizer))
        self.trainable = Container(parts)
        self.trainable.to(self.device)
        self.optimizer = build_optimizer(config, move_into_flat_buffers(self.trainable))
        self.term_names = [f"F_{a}_{b}" for a, b in config.pairs] if config.ifm else []
        self.diagnostic_names = []      # the history columns of epoch_diagnostics
        self._epoch_positions = None    # (key, {step: [device PairPositions per pair]})

    def load_splits(self, dataset):
        """The train, val and test splits on the device (``limit_train``, ``limit_eval``)."""
        config = self.config
        self.train_data = DeviceSplit(dataset.train, dataset.mean, dataset.std, self.xp,
                                      config.limit_train)
        self.val_data = DeviceSplit(dataset.val, dataset.mean, dataset.std, self.xp,
                                    config.limit_eval)
        self.test_data = DeviceSplit(dataset.test, dataset.mean, dataset.std, self.xp,
                                     config.limit_eval)

    # ------------------------------------------------------------------ steps
    def steps_per_epoch(self):
        return -(-self.train_data.n // self.config.batch_size)

    def epoch_order(self, epoch):
        """Device index array of the shuffled training set for ``epoch``."""
        perm = np.random.default_rng([self.config.seed, 1, epoch]).permutation(self.train_data.n)
        return self.xp.asarray(perm)

    def batch_index(self, order, step):
        B = self.config.batch_size
        index = order[step * B:(step + 1) * B]
        if index.shape[0] < 2:      # batch norm needs two samples: fold a lone one in
            index = order[-2:]
        return index

    def batch_size_at(self, step):
        """The length of ``batch_index(order, step)``, without the order."""
        B, n = self.config.batch_size, self.train_data.n
        size = len(range(n)[step * B:(step + 1) * B])
        return size if size >= 2 else min(2, n)

    def draw_ifm_positions(self, epoch, step, feature_shapes):
        """[host PairPositions per pair] of one step, from its generator [seed, 2, epoch, step]."""
        rng = np.random.default_rng([self.config.seed, 2, epoch, step])
        return self.regularizer.draw(feature_shapes, rng)

    def ifm_positions(self, epoch, step, features):
        """[device PairPositions per pair] of this step: a slice of an upload.

        At a call for a step the last upload does not hold, the positions of
        this step and of the next POSITIONS_AHEAD - 1 steps of the epoch are
        drawn on the host, step t from its own generator with batch size
        ``batch_size_at(t)`` and the features' (C, h, w), and uploaded once per
        pair. Per pair and step the columns are (3, S_t) int32 (S_t = 2 N_t K, or
        G B^2 for InfoNCE): at batch 128, pairs (1,2), (2,3), (3,4) pre-pool,
        64 steps hold about 38 MB with K = 64 and 260 MB with K = all. A batch
        whose size differs from the schedule's (a caller's own index) gets its
        positions drawn and uploaded on the spot, from the same generator.
        """
        from ifm.sampling import upload_positions
        shapes = [tuple(H.shape) for H in features]
        key = (epoch, tuple(s[:3] for s in shapes))
        planned = self._epoch_positions
        if planned is None or planned[0] != key or step not in planned[1]:
            self._epoch_positions = None            # free the last upload first
            steps = range(step, max(min(self.steps_per_epoch(), step + POSITIONS_AHEAD),
                                    step + 1))
            sizes = [self.batch_size_at(t) for t in steps]
            drawn = [self.draw_ifm_positions(epoch, t, [s[:3] + (N,) for s in shapes])
                     for t, N in zip(steps, sizes)]
            per_pair = [upload_positions(list(pair), self.xp) for pair in zip(*drawn)]
            planned = (key, {t: (N, list(p)) for t, N, p in zip(steps, sizes, zip(*per_pair))})
            self._epoch_positions = planned
        N, positions = planned[1][step]
        if N != shapes[0][3]:
            positions = [p.on(self.xp) for p in self.draw_ifm_positions(epoch, step, shapes)]
        return positions

    def train_step(self, index, epoch, step):
        """One optimizer step; returns device scalars (L_clf, correct, [F_l], total loss)."""
        x = self.train_data.inputs(index)
        y = self.train_data.digit[index]
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
        return loss, correct, F_values, total

    def epoch_diagnostics(self, epoch):
        """{name: float} measured at the end of an epoch, for history.csv (none here)."""
        return {}

    # ------------------------------------------------------------ evaluation
    def evaluate(self, split, progress=None):
        """(digit accuracy, texture accuracy) of the current classifier, eval mode."""
        return accuracies(self.model, lambda index: self.eval_inputs(split, index), split,
                          self.xp, progress)

    def eval_inputs(self, split, index):
        """The evaluation inputs of the rows in ``index`` (as training's, without randomness)."""
        return split.inputs(index)

    # ----------------------------------------------------------- state I/O
    def modules(self):
        """{checkpoint group: (module, what it is)}: the models a checkpoint holds."""
        modules = {"clf": (self.model, "classifier")}
        if self.regularizer is not None:
            modules["ifm"] = (self.regularizer, "IFM D")
        return modules

    def optimizers(self):
        """{checkpoint group: optimizer}."""
        return {"opt": self.optimizer}

    # --- the loop: epochs, validation, the best models -------------------------------------

    def history_columns(self):
        """The columns of history.csv, one row per epoch."""
        return (["epoch", "train_loss", "train_acc"] + self.term_names + self.diagnostic_names
                + ["val_digit_acc", "val_texture_acc", "seconds", "images_per_s"])


    def fit(self, folder, progress, best_states, model_record, quiet, interrupt, log=print):
        """Train the epochs after ``progress`` up to config.epochs; returns "done" or
        "interrupted".

        Each epoch: the steps (resumed mid-epoch from ``progress.partial``), a validation
        at its end (and every config.eval_every steps), which keeps the best models
        (``validate``); then a row of history.csv and a checkpoint. ``interrupt.requested``
        (SIGINT, SIGTERM) saves a checkpoint before the next step and stops. ``folder`` is
        the run folder, ``best_states`` the best models' states, ``model_record`` the
        record each saved model holds (saved_model.py).
        """
        config, xp = self.config, self.xp
        history = [r for r in folder.read_history() if int(r["epoch"]) <= progress.epoch_done]
        columns = self.history_columns()
        steps = self.steps_per_epoch()
        B = config.batch_size
        every = config.eval_every
        for epoch in range(progress.epoch_done + 1, config.epochs + 1):
            accum = EpochAccumulator(xp, len(self.term_names))
            start_step, carried_seconds = 0, 0.0
            if progress.partial:
                accum.load_host(progress.partial["accum"])
                start_step = progress.partial["next_step"]
                carried_seconds = progress.partial["seconds"]
                progress.partial = None
            order = self.epoch_order(epoch)
            bar = EpochProgress(epoch, config.epochs, steps, B, start_step, enabled=not quiet,
                                validation_seconds=progress.validation_seconds)
            t0 = time.perf_counter()
            for step in range(start_step, steps):
                if interrupt.requested:
                    accum.check_finite(epoch)
                    progress.partial = {"next_step": step, "accum": accum.to_host(),
                                        "seconds": carried_seconds + time.perf_counter() - t0}
                    folder.save_checkpoint(with_best(self.checkpoint_arrays(), best_states), progress)
                    log(f"saved a checkpoint at epoch {epoch}, step {step}/{steps}; continue with: "
                        f"{command()} --out {shlex.quote(folder.path)} --resume")
                    return "interrupted"
                index = self.batch_index(order, step)
                loss, correct, F_values, total = self.train_step(index, epoch, step)
                accum.add(step, int(index.shape[0]), loss, correct, F_values, total)
                if bar.due():
                    accum.check_finite(epoch)
                    bar.show(step + 1, accum.mean_loss())
                if every and ((epoch - 1) * steps + step + 1) % every == 0 and step + 1 < steps:
                    accum.check_finite(epoch)
                    self.validate(folder, progress, best_states, epoch, step + 1, model_record, bar)
            accum.check_finite(epoch)
            train_seconds = carried_seconds + time.perf_counter() - t0
            bar.show(steps, accum.mean_loss(), final=True)
            diagnostics = self.epoch_diagnostics(epoch)
            val_digit, val_texture = self.validate(folder, progress, best_states, epoch, steps,
                                                   model_record, bar, record=bool(every))
            seconds = carried_seconds + time.perf_counter() - t0
            host = accum.to_host()
            row = {"epoch": epoch, "train_loss": f"{host['loss'] / host['seen']:.6f}",
                   "train_acc": f"{host['correct'] / host['seen']:.6f}",
                   "val_digit_acc": f"{val_digit:.6f}", "val_texture_acc": f"{val_texture:.6f}",
                   "seconds": f"{seconds:.2f}",
                   "images_per_s": f"{host['seen'] / max(train_seconds, 1e-9):.1f}"}
            for name, F in zip(self.term_names, host["F"]):
                row[name] = f"{F / host['steps']:.6f}"
            row.update({name: f"{value:.6g}" for name, value in diagnostics.items()})
            history.append(row)
            folder.write_history(history, columns)
            progress.epoch_done = epoch
            progress.wall_seconds += seconds
            folder.save_checkpoint(with_best(self.checkpoint_arrays(), best_states), progress)
            F_text = "".join(f" {n} {row[n]}" for n in self.term_names)
            log(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']} acc "
                f"{float(row['train_acc']):.4f}{F_text} | val digit {val_digit:.4f} texture "
                f"{val_texture:.4f} | {format_seconds(seconds)}")
            if interrupt.requested:     # asked during the epoch's last step or its validation
                log(f"saved a checkpoint at the end of epoch {epoch}; continue with: "
                    f"{command()} --out {shlex.quote(folder.path)} --resume")
                return "interrupted"
        return "done"


    def validate(self, folder, progress, best_states, epoch, step, model_record, bar,
                 record=True):
        """Validation accuracies after ``step`` steps of ``epoch``; keeps the best checkpoints.

        A new best model is written to best_<which>.npz and kept in ``best_states``,
        which the next checkpoint holds too: a resume restores exactly the best
        models that its checkpoint's records describe. Each file also holds
        ``model_record`` with the validation that selected it (saved_model.py).

        With ``record``, the validation is also appended to evaluations.csv (runs
        with --eval-every; the epoch ends are in history.csv either way).
        """
        start = time.perf_counter()
        val_digit, val_texture = self.evaluate(self.val_data, progress=bar.validating)
        progress.validation_seconds = time.perf_counter() - start
        result = {"epoch": epoch, "step": step, "val_digit_acc": val_digit,
                  "val_texture_acc": val_texture}
        for which, key in (("best_digit", "val_digit_acc"), ("best_texture", "val_texture_acc")):
            best = progress.best.get(which)
            if best is None or result[key] > best[key]:
                progress.best[which] = result
                best_states[which] = state_to_numpy(self.model.state_dict())
                folder.save_best(which, best_states[which], {**model_record, "selected": result})
        if record:
            progress.evaluations = (progress.evaluations or []) + [result]
            folder.write_evaluations(progress.evaluations)
        return val_digit, val_texture

    def checkpoint_arrays(self):
        states = {g: m.state_dict() for g, (m, _) in self.modules().items()}
        states.update({g: o.state_dict() for g, o in self.optimizers().items()})
        return {f"{g}/{k}": v for g, state in states.items() for k, v in state.items()}

    def load_checkpoint_arrays(self, arrays):
        from nn.serialization import load_state_into
        modules, optimizers = self.modules(), self.optimizers()
        groups = {g: {} for g in (*modules, *optimizers)}
        for key, value in arrays.items():
            group, _, name = key.partition("/")
            if group not in groups:
                raise ValueError(f"checkpoint: unexpected entry {key!r} (this run's checkpoints "
                                 f"hold {', '.join(groups)})")
            groups[group][name] = value
        if "ifm" in modules:                # D_l under the names of older checkpoints
            regularizer = modules["ifm"][0]
            groups["ifm"] = regularizer.translate_old_keys(groups["ifm"])
            for slot in {k.split("/")[0] for k in groups["opt"] if "/" in k}:
                groups["opt"] = regularizer.translate_old_keys(groups["opt"], f"{slot}/ifm.")
        for group, (module, what) in modules.items():
            load_state_into(module.state_dict(), groups[group], f"checkpoint ({what})")
        for group, optimizer in optimizers.items():
            optimizer.load_state_dict(groups[group])


class EpochAccumulator:
    """Running sums of one epoch, on the device; read to the host once."""

    def __init__(self, xp, n_pairs):
        self.xp = xp
        self.loss = xp.zeros((), dtype=xp.float64)
        self.correct = xp.zeros((), dtype=xp.int64)
        self.F = xp.zeros(n_pairs, dtype=xp.float64)
        self.seen = 0
        self.steps = 0
        self.first_bad_step = xp.full((), NO_STEP, dtype=xp.int64)

    def add(self, step, batch, loss, correct, F_values, total):
        xp = self.xp
        self.loss += loss * batch
        self.correct += correct
        if F_values:
            self.F += xp.stack(F_values)
        self.seen += batch
        self.steps += 1
        # step where the total loss is not finite, NO_STEP elsewhere: arithmetic on
        # 0-d device arrays, so nothing waits for the device here
        bad = ~xp.isfinite(total)
        candidate = NO_STEP - bad * (NO_STEP - step)
        self.first_bad_step = xp.minimum(self.first_bad_step, candidate)

    def check_finite(self, epoch):
        bad = int(self.first_bad_step)
        if bad != NO_STEP:
            raise NonFiniteLoss(epoch, bad + 1)

    def mean_loss(self):
        return float(self.loss) / max(self.seen, 1)

    def to_host(self):
        return {"loss": float(self.loss), "correct": int(self.correct),
                "F": [float(v) for v in to_numpy(self.F)], "seen": self.seen, "steps": self.steps}

    def load_host(self, saved):
        xp = self.xp
        self.loss = xp.asarray(saved["loss"], dtype=xp.float64)
        self.correct = xp.asarray(saved["correct"], dtype=xp.int64)
        self.F = xp.asarray(np.array(saved["F"], dtype=np.float64).reshape(self.F.shape))
        self.seen, self.steps = saved["seen"], saved["steps"]

