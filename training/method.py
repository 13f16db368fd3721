"""The method interface: what a training method supplies to the loop that trains it.

The loop (experiment/trainer.py's Trainer) owns the epochs, the batch order
(StepPlan), validation, the best models, checkpoints and the run folder. It
builds the method of the run's Config and then only calls what Method
declares:

    Method(config, train, device, plan)   build the models and optimizers; ``train`` is
                                          the training split on the device (images, digit,
                                          inputs(index)), ``plan`` the StepPlan
    model                                 the classifier: validated, tested, saved as
                                          best_*.npz
    term_names                            names of StepResult.terms (history.csv columns)
    diagnostic_names                      names of epoch_diagnostics' values (columns too)
    train_step(index, epoch, step)        one optimizer step on the batch ``index``
    eval_inputs(split, index)             the model's input x of those rows, for evaluation
    epoch_diagnostics(epoch)              {name: float} at an epoch's end (none by default)
    modules(), optimizers()               what a checkpoint holds, by checkpoint group
    load_checkpoint(groups)               restore them from a checkpoint's groups

Randomness is derived from the seed and the position in training, never from a
stream that must be carried along (weights from [seed, 0]; a step's draws from
[seed, k, epoch, step]), so a run resumed from any checkpoint replays an
uninterrupted one exactly.
"""
from typing import NamedTuple

import numpy as np

from nn.backend import xp_for
from nn.optim import SGD, Adam, Adamax
from nn.serialization import load_state_into


class StepResult(NamedTuple):
    """One training step's device scalars; the loop reads them once per log line or epoch."""
    loss: object        # the loss history.csv reports as train_loss, 0-d
    correct: object     # correctly classified images of the batch, 0-d integer
    terms: list         # the values named by Method.term_names, 0-d each
    total: object       # the objective the step descended, 0-d (the NaN guard reads it)


class Method:
    """A training method; see the module docstring for what the loop calls."""
    term_names = ()
    diagnostic_names = ()

    def __init__(self, config, train, device, plan):
        self.config, self.train, self.device, self.plan = config, train, device, plan
        self.xp = xp_for(device)

    def init_rng(self):
        """The generator the weights are drawn from: [seed, 0]."""
        return np.random.default_rng([self.config.seed, 0])

    def train_step(self, index, epoch, step):
        """One optimizer step on the training rows ``index`` of step ``step`` of ``epoch``
        (1-based); a StepResult."""
        raise NotImplementedError

    def eval_inputs(self, split, index):
        """The model's input x of the rows ``index`` of ``split``, as training's without
        its randomness."""
        raise NotImplementedError

    def epoch_diagnostics(self, epoch):
        """{name: float} measured at the end of ``epoch``, named by diagnostic_names."""
        return {}

    def modules(self):
        """{checkpoint group: (module, what it is)}: the models a checkpoint holds."""
        raise NotImplementedError

    def optimizers(self):
        """{checkpoint group: optimizer}."""
        raise NotImplementedError

    def load_checkpoint(self, groups):
        """Restore modules and optimizers from ``groups`` ({group: {name: array}}); a
        ValueError naming what does not fit."""
        for group, (module, what) in self.modules().items():
            load_state_into(module.state_dict(), groups.get(group, {}), f"checkpoint ({what})")
        for group, optimizer in self.optimizers().items():
            optimizer.load_state_dict(groups.get(group, {}))


def build_optimizer(config, flat):
    """The optimizer ``config`` names (sgd, adam, adamax; its lr, momentum, weight decay)
    over ``flat``, parameters moved into flat buffers (nn.flat.move_into_flat_buffers)."""
    if config.optimizer == "sgd":
        return SGD(flat, lr=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay)
    if config.optimizer == "adamax":
        return Adamax(flat, lr=config.lr)
    return Adam(flat, lr=config.lr, weight_decay=config.weight_decay)
