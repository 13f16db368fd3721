"""iCE fi-RevNet (ice/objective.py) as a training method (training.Method).

The loop of experiment/trainer.py trains it as it trains baseline and IFM:
the same epochs, shuffles (training.StepPlan), NaN guard, validation, best
checkpoints and report. A checkpoint holds "clf" (the encoder), "nc" (D_nc),
"opt" and "opt_nc".

Randomness comes from the seed and the position in training only: weights
from [seed, 0] (the flow's, then D_nc's), and in step s of epoch e the
dequantization noise from [seed, 3, e, s], the couplings' dropout from
[seed, 4, e, s], D_nc's dropout (5 inner steps, then the encoder's term) from
[seed, 5, e, s], the label permutation (--ice-labels shuffled) from
[seed, 6, e, s]. For the noise and the masks the host draws only seeds; the
arrays are drawn on the device (nn.random.SeededUniform: one generator per
use, reseeded), so nothing is uploaded or read back. The label permutations
of the rest of an epoch are drawn on the host and uploaded once, at the
epoch's first step (training.DrawnAhead; a permutation on the device would
sort, and CuPy's sort waits for the device). The flow's
ActNorms are initialized from the first training batch (dropout off); a
loaded checkpoint marks them initialized instead, so a resumed run replays
an uninterrupted one exactly.

The encoder's learning rate follows the authors' schedule,
    lr_e = lr * 0.2^k,   k = #{m in LR_DROPS : e > m}      (e = 1, 2, ...)
and D_nc's stays lr. ``train_step`` returns (L, correct, [bpd, CE(logits),
CE(D_nc)], L); history.csv and the epoch lines show each term's mean per
step under TERM_NAMES.

At each epoch's end ``epoch_diagnostics`` measures, on one fixed batch (the
first ``batch_size`` training images), the gradient norm of each term of L
at the flow's parameters: ||d bpd/dtheta||, ||d CE(logits, y)/dtheta|| and
||d(-beta CE(D_nc(z_n), y_enc))/dtheta|| (GRADIENT_NORM_NAMES in
history.csv), so a reader sees whether the nuisance term acts. Its noise,
masks and label permutation come from generators of their own ([seed, 7..10,
e]), and the logits' batch-norm statistics are restored after it: training
goes on exactly as without it.
"""
import numpy as np

from nn.dropout import draw_seed
from nn.flat import move_into_flat_buffers
from nn.random import SeededUniform
from training import DrawnAhead, Method, StepResult, build_optimizer, upload_joined

from .objective import (IceModel, NuisanceClassifier, dequantize, fit_nuisance, ice_backward,
                        ice_objective, input_log_det)

TERM_NAMES = ("nll_bpd", "ce_logits", "ce_nuisance")
GRADIENT_NORM_NAMES = ("grad_nll", "grad_ce_logits", "grad_nuisance")
INNER_STEPS = 5
LR_DROPS = (61, 121, 161)   # the authors' epochs 60, 120, 160, counted from 0 there


def encoder_lr(lr, epoch):
    """lr * 0.2^k, k the drops of LR_DROPS that epoch ``epoch`` (1-based) has passed."""
    return lr * 0.2 ** sum(epoch > m for m in LR_DROPS)


class IceMethod(Method):
    """The encoder (flow + BN), D_nc and their optimizers (Adamax by default)."""
    term_names = TERM_NAMES
    diagnostic_names = GRADIENT_NORM_NAMES

    def __init__(self, config, train, device, plan):
        super().__init__(config, train, device, plan)
        init_rng = self.init_rng()
        self.values = int(np.prod(train.images.shape[1:]))     # D = 3 H W
        self.model = IceModel(train.images.shape[1], depth=config.flow_depth,
                              rng=init_rng).to(device)
        self.critic = NuisanceClassifier(self.values, rng=init_rng).to(device)
        self.optimizer = build_optimizer(config, move_into_flat_buffers(self.model))
        self.critic_optimizer = build_optimizer(config, move_into_flat_buffers(self.critic))
        self.initialized = False        # the flow's ActNorms
        self.uniform = SeededUniform()  # the dequantization noise
        self.permutations = DrawnAhead(plan, plan.steps_per_epoch,
                                       lambda perms: upload_joined(perms, self.xp))

    def step_rng(self, k, epoch, step):
        return np.random.default_rng([self.config.seed, k, epoch, step])

    def train_step(self, index, epoch, step):
        """One step (ice/objective.py); StepResult(L, correct, [bpd, CE(logits), CE(D_nc)],
        L) of device scalars."""
        config, split = self.config, self.train
        images = split.images[index]
        noise = self.uniform(draw_seed(self.step_rng(3, epoch, step)),
                             images.shape[1:] + images.shape[:1], self.xp)
        x = dequantize(images, noise)
        y = split.digit[index]
        if not self.initialized:
            self.model.initialize(x)
            self.initialized = True
        self.model.flow.set_dropout_rng(self.step_rng(4, epoch, step))
        logits = self.model.forward(x)
        self.critic.set_dropout_rng(self.step_rng(5, epoch, step))
        fit_nuisance(self.critic, self.critic_optimizer, self.model.nuisance_input, y,
                     INNER_STEPS)
        y_enc = self.encoder_labels(y, epoch, step)
        terms, upstream = ice_objective(self.model, self.critic, logits, y, y_enc,
                                        config.ice_beta, input_log_det(self.values))
        ice_backward(self.model, self.critic, upstream)
        self.optimizer.lr = encoder_lr(config.lr, epoch)
        self.optimizer.step()
        correct = (logits.argmax(axis=0) == y).sum()
        return StepResult(terms.loss, correct, [terms.bpd, terms.ce_logits, terms.ce_nuisance],
                          terms.loss)

    def epoch_diagnostics(self, epoch):
        """{name: float} of GRADIENT_NORM_NAMES: each term's gradient norm at the flow's
        parameters on the first batch of the training set (module docstring)."""
        config, split, xp = self.config, self.train, self.xp
        index = xp.arange(min(config.batch_size, split.n))
        images, y = split.images[index], split.digit[index]
        rng = lambda k: np.random.default_rng([config.seed, k, epoch])    # noqa: E731
        x = dequantize(images, self.uniform(draw_seed(rng(7)),
                                            images.shape[1:] + images.shape[:1], xp))
        y_enc = y if config.ice_labels == "true" else y[xp.asarray(rng(10).permutation(len(y)))]
        saved = {k: v.copy() for k, v in self.model.buffers.items()}
        flow_keys = [k for k in self.model.grads if k.startswith("flow.")]
        norms = []
        for term in range(len(GRADIENT_NORM_NAMES)):
            self.model.flow.set_dropout_rng(rng(8))         # the same masks for every term
            self.critic.set_dropout_rng(rng(9))
            logits = self.model.forward(x)
            _, upstream = ice_objective(self.model, self.critic, logits, y, y_enc,
                                        config.ice_beta, input_log_det(self.values))
            dlogits, dcritic, dlogp = upstream     # the term's own upstream, the others zero
            only = [dlogp, dlogits, dcritic][term]
            ice_backward(self.model, self.critic,
                         tuple(u if u is only else xp.zeros_like(u) for u in upstream))
            norms.append(xp.sqrt(sum((self.model.grads[k] ** 2).sum() for k in flow_keys)))
        for k, v in saved.items():
            self.model.buffers[k][...] = v
        return {name: float(v) for name, v in zip(GRADIENT_NORM_NAMES, norms)}

    def encoder_labels(self, y, epoch, step):
        """y_enc: y, or y[perm] (--ice-labels shuffled), perm a permutation of the batch
        from the step's generator [seed, 6, epoch, step] (those of the rest of the epoch
        drawn and uploaded together, training.DrawnAhead)."""
        if self.config.ice_labels == "true":
            return y
        draw = lambda t, n: self.step_rng(6, epoch, t).permutation(n)     # noqa: E731
        return y[self.permutations(epoch, step, y.shape[0], draw)]

    def eval_inputs(self, split, index):
        """x of the bin centres (u = 1/2), the mean of the training inputs."""
        return dequantize(split.images[index], np.float32(0.5))

    def modules(self):
        return {"clf": (self.model, "iCE encoder"), "nc": (self.critic, "nuisance classifier")}

    def optimizers(self):
        return {"opt": self.optimizer, "opt_nc": self.critic_optimizer}

    def load_checkpoint(self, groups):
        """As Method's; the loaded ActNorms count as initialized."""
        super().load_checkpoint(groups)
        self.model.mark_initialized()
        self.initialized = True
