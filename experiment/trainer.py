"""The training loop of the shiftedMNIST experiment: Trainer.

The Trainer owns what every method shares: the splits on the device, the
batches of each epoch (training.StepPlan: the shuffle of epoch e from
[seed, 1, e]), the epochs with their validations, the choice of the best
models, the checkpoints and the run folder's history. The method of the run's
--method (experiment/methods.py: baseline and IFM; ice/method.py: iCE
fi-RevNet) supplies the models, the training step, the evaluation inputs and
what a checkpoint holds (the interface is training.Method). A checkpoint
holds each of the method's modules and optimizers under its group, and the
best models (runfolder.with_best), so that a run interrupted anywhere and
resumed from it replays exactly what an uninterrupted run does.

Device discipline: data, labels and running metrics stay on the device; the
host reads them only when a progress line is shown and at the end of an epoch.
"""
import shlex
import time

import numpy as np

from nn.backend import to_numpy, xp_for
from nn.serialization import state_to_numpy
from training import StepPlan

from .dataset import DeviceSplit
from .methods import METHODS
from .progress import EpochProgress, format_seconds
from .runfolder import with_best
from .settings import command

EVAL_BATCH = 1000
NO_STEP = 2 ** 62       # "no non-finite loss yet" in EpochAccumulator.first_bad_step


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf at ``epoch``, ``step`` (1-based)."""

    def __init__(self, epoch, step):
        super().__init__(f"the loss became NaN or inf at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


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


class Trainer:
    """The splits, the step plan and the method of one run (its Config) on one device."""

    def __init__(self, config, dataset, device):
        self.config, self.device = config, device
        self.xp = xp_for(device)
        self.train_data = DeviceSplit(dataset.train, dataset.mean, dataset.std, self.xp,
                                      config.limit_train)
        self.val_data = DeviceSplit(dataset.val, dataset.mean, dataset.std, self.xp,
                                    config.limit_eval)
        self.test_data = DeviceSplit(dataset.test, dataset.mean, dataset.std, self.xp,
                                     config.limit_eval)
        self.plan = StepPlan(self.train_data.n, config.batch_size, config.seed, self.xp)
        self.method = METHODS[config.method](config, self.train_data, device, self.plan)

    def evaluate(self, split, progress=None):
        """(digit accuracy, texture accuracy) of the method's classifier, eval mode."""
        return accuracies(self.method.model,
                          lambda index: self.method.eval_inputs(split, index), split, self.xp,
                          progress)

    # --- the loop: epochs, validation, the best models -------------------------------------

    def history_columns(self):
        """The columns of history.csv, one row per epoch."""
        return (["epoch", "train_loss", "train_acc"] + list(self.method.term_names)
                + list(self.method.diagnostic_names)
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
        config, xp, method, plan = self.config, self.xp, self.method, self.plan
        history = [r for r in folder.read_history() if int(r["epoch"]) <= progress.epoch_done]
        columns = self.history_columns()
        steps = plan.steps_per_epoch
        every = config.eval_every
        for epoch in range(progress.epoch_done + 1, config.epochs + 1):
            accum = EpochAccumulator(xp, len(method.term_names))
            start_step, carried_seconds = 0, 0.0
            if progress.partial:
                accum.load_host(progress.partial["accum"])
                start_step = progress.partial["next_step"]
                carried_seconds = progress.partial["seconds"]
                progress.partial = None
            order = plan.epoch_order(epoch)
            bar = EpochProgress(epoch, config.epochs, steps, config.batch_size, start_step,
                                enabled=not quiet,
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
                index = plan.batch_index(order, step)
                result = method.train_step(index, epoch, step)
                accum.add(step, int(index.shape[0]), result)
                if bar.due():
                    accum.check_finite(epoch)
                    bar.show(step + 1, accum.mean_loss())
                if every and ((epoch - 1) * steps + step + 1) % every == 0 and step + 1 < steps:
                    accum.check_finite(epoch)
                    self.validate(folder, progress, best_states, epoch, step + 1, model_record, bar)
            accum.check_finite(epoch)
            train_seconds = carried_seconds + time.perf_counter() - t0
            bar.show(steps, accum.mean_loss(), final=True)
            diagnostics = method.epoch_diagnostics(epoch)
            val_digit, val_texture = self.validate(folder, progress, best_states, epoch, steps,
                                                   model_record, bar, record=bool(every))
            seconds = carried_seconds + time.perf_counter() - t0
            host = accum.to_host()
            row = {"epoch": epoch, "train_loss": f"{host['loss'] / host['seen']:.6f}",
                   "train_acc": f"{host['correct'] / host['seen']:.6f}",
                   "val_digit_acc": f"{val_digit:.6f}", "val_texture_acc": f"{val_texture:.6f}",
                   "seconds": f"{seconds:.2f}",
                   "images_per_s": f"{host['seen'] / max(train_seconds, 1e-9):.1f}"}
            for name, term in zip(method.term_names, host["F"]):
                row[name] = f"{term / host['steps']:.6f}"
            row.update({name: f"{value:.6g}" for name, value in diagnostics.items()})
            history.append(row)
            folder.write_history(history, columns)
            progress.epoch_done = epoch
            progress.wall_seconds += seconds
            folder.save_checkpoint(with_best(self.checkpoint_arrays(), best_states), progress)
            terms_text = "".join(f" {n} {row[n]}" for n in method.term_names)
            log(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']} acc "
                f"{float(row['train_acc']):.4f}{terms_text} | val digit {val_digit:.4f} texture "
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
                best_states[which] = state_to_numpy(self.method.model.state_dict())
                folder.save_best(which, best_states[which], {**model_record, "selected": result})
        if record:
            progress.evaluations = (progress.evaluations or []) + [result]
            folder.write_evaluations(progress.evaluations)
        return val_digit, val_texture

    def checkpoint_arrays(self):
        """The method's modules and optimizers, as {"<group>/<name>": array}."""
        states = {g: m.state_dict() for g, (m, _) in self.method.modules().items()}
        states.update({g: o.state_dict() for g, o in self.method.optimizers().items()})
        return {f"{g}/{k}": v for g, state in states.items() for k, v in state.items()}

    def load_checkpoint_arrays(self, arrays):
        """Load ``checkpoint_arrays``' entries into the method; a ValueError naming an
        entry that belongs to no group of the method, or one that does not fit."""
        groups = {g: {} for g in (*self.method.modules(), *self.method.optimizers())}
        for key, value in arrays.items():
            group, _, name = key.partition("/")
            if group not in groups:
                raise ValueError(f"checkpoint: unexpected entry {key!r} (this run's checkpoints "
                                 f"hold {', '.join(groups)})")
            groups[group][name] = value
        self.method.load_checkpoint(groups)


class EpochAccumulator:
    """Running sums of one epoch's StepResults, on the device; read to the host once. The
    sums of the method's terms are "F" in a checkpoint's record (IFM's F_l were the first)."""

    def __init__(self, xp, n_terms):
        self.xp = xp
        self.loss = xp.zeros((), dtype=xp.float64)
        self.correct = xp.zeros((), dtype=xp.int64)
        self.F = xp.zeros(n_terms, dtype=xp.float64)
        self.seen = 0
        self.steps = 0
        self.first_bad_step = xp.full((), NO_STEP, dtype=xp.int64)

    def add(self, step, batch, result):
        xp = self.xp
        self.loss += result.loss * batch
        self.correct += result.correct
        if result.terms:
            self.F += xp.stack(result.terms)
        self.seen += batch
        self.steps += 1
        # step where the total loss is not finite, NO_STEP elsewhere: arithmetic on
        # 0-d device arrays, so nothing waits for the device here
        bad = ~xp.isfinite(result.total)
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

