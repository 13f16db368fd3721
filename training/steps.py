"""The batches of an epoch, and per-step random draws made ahead of the steps.

StepPlan: n training images in batches of B; epoch e visits them in the order
of a permutation drawn from [seed, 1, e]. Step s takes rows [s B, (s + 1) B)
of that order; a last batch of one image takes the last two instead (batch
norm needs two samples).

DrawnAhead: some methods draw, per step, random integer arrays on the host
(IFM's pair positions, iCE's label permutations), each step from its own
generator so that a step's draws depend on (seed, epoch, step) alone. Moving
each to the device at its step would cost one upload (and a wait) per step;
instead the draws of many steps are made at once, joined into one array per
kind and uploaded in one copy, and each step takes its views of it
(``upload_joined``).
"""
import numpy as np


class StepPlan:
    """The batches of an epoch (module docstring); ``xp`` is the device's array module."""

    def __init__(self, n, batch_size, seed, xp):
        self.n, self.batch_size, self.seed, self.xp = n, batch_size, seed, xp
        self.steps_per_epoch = -(-n // batch_size)

    def epoch_order(self, epoch):
        """Device index array of the shuffled training set for ``epoch``."""
        return self.xp.asarray(np.random.default_rng([self.seed, 1, epoch]).permutation(self.n))

    def batch_index(self, order, step):
        """The rows of step ``step`` in ``order``."""
        B = self.batch_size
        index = order[step * B:(step + 1) * B]
        if index.shape[0] < 2:      # batch norm needs two samples: fold a lone one in
            index = order[-2:]
        return index

    def batch_size_at(self, step):
        """The length of ``batch_index(order, step)``, without the order."""
        B, n = self.batch_size, self.n
        size = len(range(n)[step * B:(step + 1) * B])
        return size if size >= 2 else min(2, n)


def upload_joined(arrays, xp, dtype=None):
    """Host arrays (..., S_t) of steps t = 0..T-1, moved to the device in ONE ``xp.asarray``
    of their join along the last axis (as ``dtype``, default their own); returns step t's
    view [..., o_t:o_t + S_t] of it, in order."""
    sizes = [a.shape[-1] for a in arrays]
    offsets = np.cumsum([0] + sizes)
    device = xp.asarray(np.concatenate(arrays, axis=-1, dtype=dtype))
    return [device[..., lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])]


class DrawnAhead:
    """The draws of steps [s, s + ahead) of an epoch, made and uploaded at step s's call.

    ``upload``: a list of steps' host draws -> the list of their device values, in one
    copy per kind (``upload_joined``). A call for a step names the draws' ``key``
    (what they depend on beyond the step, e.g. the epoch) and ``draw(t, n)``, the host
    draws of step t for a batch of n, from step t's own generator. Where the last
    upload does not hold the step under this key, the steps from it to ``ahead`` later
    (within the epoch) are drawn with the plan's batch sizes and uploaded; a batch
    whose size differs from the plan's (a caller's own index) gets its draws uploaded
    on the spot.
    """

    def __init__(self, plan, ahead, upload):
        self.plan, self.ahead, self.upload = plan, ahead, upload
        self.held = None        # (key, {step: (batch size, device value)})

    def __call__(self, key, step, n, draw):
        if self.held is None or self.held[0] != key or step not in self.held[1]:
            self.held = None                    # free the last upload first
            steps = range(step, max(min(self.plan.steps_per_epoch, step + self.ahead), step + 1))
            sizes = [self.plan.batch_size_at(t) for t in steps]
            values = self.upload([draw(t, m) for t, m in zip(steps, sizes)])
            self.held = (key, {t: (m, v) for t, m, v in zip(steps, sizes, values)})
        planned, value = self.held[1][step]
        return value if planned == n else self.upload([draw(step, n)])[0]
