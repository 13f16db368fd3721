"""The training loop of iCE fi-RevNet (experiment/ice.py), with Trainer's interface.

experiment/run.py drives it as it drives Trainer: the same epochs, shuffles
(Trainer.epoch_order), NaN guard, validation, best checkpoints and report.

Randomness comes from the seed and the position in training only: weights
from [seed, 0] (the flow's, then D_nc's), and in step s of epoch e the
dequantization noise from [seed, 3, e, s], the couplings' dropout from
[seed, 4, e, s], D_nc's dropout (5 inner steps, then the encoder's term) from
[seed, 5, e, s], the label permutation (--ice-labels shuffled) from
[seed, 6, e, s]. The host draws only seeds; the arrays are drawn on the
device (experiment.ice.device_random_state): no upload, no sync. The flow's
ActNorms are initialized from the first training batch (dropout off); a
loaded checkpoint marks them initialized instead, so a resumed run replays
an uninterrupted one exactly.

The encoder's learning rate follows the authors' schedule,
    lr_e = lr * 0.2^k,   k = #{m in LR_DROPS : e > m}      (e = 1, 2, ...)
and D_nc's stays lr. ``train_step`` returns (L, correct, [bpd, CE(logits),
CE(D_nc)], L); history.csv and the epoch lines show each term's mean per
step under TERM_NAMES.
"""
import numpy as np

from .ice import (IceModel, NuisanceClassifier, dequantize, device_random_state,
                  fit_nuisance, ice_backward, ice_objective, input_log_det)
from .trainer import Trainer, build_optimizer

TERM_NAMES = ("nll_bpd", "ce_logits", "ce_nuisance")
INNER_STEPS = 5
LR_DROPS = (61, 121, 161)   # the authors' epochs 60, 120, 160, counted from 0 there


def encoder_lr(lr, epoch):
    """lr * 0.2^k, k the drops of LR_DROPS that epoch ``epoch`` (1-based) has passed."""
    return lr * 0.2 ** sum(epoch > m for m in LR_DROPS)


class IceTrainer(Trainer):
    """Owns the encoder (flow + BN), D_nc, their Adamax optimizers and the data."""

    def build(self, dataset, init_rng):
        cfg = self.cfg
        self.values = int(np.prod(dataset.train.images.shape[1:]))     # D = 3 H W
        self.model = IceModel(dataset.train.images.shape[1], depth=cfg["flow_depth"],
                              rng=init_rng).to(self.device)
        self.critic = NuisanceClassifier(self.values, rng=init_rng).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model.params, self.model.grads)
        self.critic_optimizer = build_optimizer(cfg, self.critic.params, self.critic.grads)
        self.term_names = list(TERM_NAMES)
        self.initialized = False        # the flow's ActNorms

    def step_rng(self, k, epoch, step):
        return np.random.default_rng([self.cfg["seed"], k, epoch, step])

    def train_step(self, index, epoch, step):
        """One step (experiment/ice.py); returns device scalars (L, correct, terms, L)."""
        cfg, split = self.cfg, self.train_data
        images = split.images[index]
        noise = device_random_state(self.xp, self.step_rng(3, epoch, step)).random_sample(
            images.shape[1:] + images.shape[:1]).astype(np.float32)
        x = dequantize(images, noise)
        y = split.digit[index]
        if not self.initialized:
            self.model.initialize(x)
            self.initialized = True
        self.model.flow.set_dropout_rng(self.step_rng(4, epoch, step))
        logits = self.model.forward(x)
        critic_rng = self.step_rng(5, epoch, step)
        fit_nuisance(self.critic, self.critic_optimizer, self.model.nuisance_input, y,
                     INNER_STEPS, critic_rng)
        self.critic.reseed(critic_rng)
        y_enc = self.encoder_labels(y, epoch, step)
        terms, upstream = ice_objective(self.model, self.critic, logits, y, y_enc,
                                        cfg["ice_beta"], input_log_det(self.values))
        ice_backward(self.model, self.critic, upstream)
        self.optimizer.lr = encoder_lr(cfg["lr"], epoch)
        self.optimizer.step(self.model.grads)
        correct = (logits.argmax(axis=0) == y).sum()
        return terms.loss, correct, [terms.bpd, terms.ce_logits, terms.ce_nuisance], terms.loss

    def encoder_labels(self, y, epoch, step):
        """y_enc: y, or y permuted within the batch (--ice-labels shuffled) by argsort of U[0, 1)."""
        if self.cfg["ice_labels"] == "true":
            return y
        u = device_random_state(self.xp, self.step_rng(6, epoch, step)).random_sample(y.shape[0])
        return y[self.xp.argsort(u)]

    def eval_inputs(self, split, index):
        """x of the bin centres (u = 1/2), the mean of the training inputs."""
        return dequantize(split.images[index], np.float32(0.5))

    def modules(self):
        return {"clf": (self.model, "iCE encoder"), "nc": (self.critic, "nuisance classifier")}

    def optimizers(self):
        return {"opt": self.optimizer, "opt_nc": self.critic_optimizer}

    def load_checkpoint_arrays(self, arrays):
        super().load_checkpoint_arrays(arrays)
        self.model.mark_initialized()
        self.initialized = True
