"""IFMRegularizer: IFM over several pairs of conv-block outputs (paper Eq. 5).

    L = L_clf - lambda * sum_l F_l,   F_l = F(H_l, H_{l+1}) by its own D_l

The paper pairs blocks (1,2), (2,3), (3,4); H_l is the output of conv block l
after its LeakyReLU and before its max-pool, so H_{l+1} is exactly half its
size and both are the maps the classifier actually passes on (the pooled map
is a function of H_l). Layer indices are 1-based as in the paper.

    reg = IFMRegularizer(channels=[32, 64, 128, 128], pairs=[(1, 2), (2, 3), (3, 4)],
                         lam=1.0, samples=64, estimator="jsd", rng=init_rng)
    F_list = reg.forward([H_1, H_2, H_3, H_4], rng)   # one 0-d F per pair
    # or positions drawn ahead on the host (reg.draw(shapes, rng)), moved to the
    # device (block.upload_positions), then reg.forward(features, positions=...)
    dH = reg.backward()   # list like features: dL/dH_l = -lambda * sum dF/dH_l (or None)

``backward`` also fills every D's grads with the gradient of the same loss
term, -lambda * dF_l/dtheta, so one optimizer step by gradient DESCENT on
L over the classifier's and the regularizer's parameters makes the CNN and
every D maximize F. ``params``/``grads``/``buffers`` are live flat views keyed
"ifm12.0.W" and so on. The D's are not part of the classifier: a saved
classifier (its own state_dict) holds no IFM parameter.
"""
import numpy as np

from nn.module import Container

from .block import IFMBlock
from .critic import HIDDEN

PAPER_PAIRS = ((1, 2), (2, 3), (3, 4))


class IFMRegularizer(Container):
    def __init__(self, channels, pairs=PAPER_PAIRS, lam=1.0, samples=64, estimator="jsd",
                 upsample="nearest", marginal="image", rng=None, dtype=np.float32,
                 dv_ema=None, hidden=HIDDEN):
        pairs = [tuple(p) for p in pairs]
        for low, high in pairs:
            if not (1 <= low < len(channels) and high == low + 1):
                raise ValueError(f"pair {(low, high)}: IFM pairs adjacent layers l, l+1 "
                                 f"within 1..{len(channels)}")
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"repeated pair in {pairs}")
        self.blocks = [IFMBlock(channels[low - 1], channels[high - 1], samples=samples,
                                estimator=estimator, upsample=upsample, marginal=marginal,
                                rng=rng, dtype=dtype, dv_ema=dv_ema, hidden=hidden)
                       for low, high in pairs]
        self.names = [f"ifm{low}{high}" for low, high in pairs]
        super().__init__(zip(self.names, self.blocks))
        self.channels, self.pairs, self.lam = list(channels), pairs, lam
        self._n_features = None

    def draw(self, feature_shapes, rng):
        """[host PairPositions per pair] for features of these shapes.

        Drawn from ``rng`` block by block, in the order ``forward(features, rng)``
        draws them, so both consume the generator alike.
        """
        self._check_count(feature_shapes)
        return [block.draw(feature_shapes[low - 1], feature_shapes[high - 1], rng)[1]
                for (low, high), block in zip(self.pairs, self.blocks)]

    def forward(self, features, rng=None, positions=None):
        """[F_l] (0-d arrays) for features [H_1, ..., H_L].

        ``rng`` drives all sampling; or ``positions`` gives each pair's
        PairPositions on the features' device (a list like ``draw``'s).
        """
        self._check_count(features)
        if positions is None:
            positions = [None] * len(self.blocks)
        elif rng is not None:
            raise ValueError("give exactly one of rng and positions")
        self._n_features = len(features)
        return [block.forward(features[low - 1], features[high - 1], rng, p)
                for (low, high), block, p in zip(self.pairs, self.blocks, positions)]

    def _check_count(self, features):
        if len(features) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} feature maps, got {len(features)}")

    def backward(self):
        """dL/dH for L's term -lam * sum_l F_l: a list like features (None where unused)."""
        if self._n_features is None:
            raise RuntimeError("backward called before forward")
        dfeatures = [None] * self._n_features
        for (low, high), block in zip(self.pairs, self.blocks):
            dh_low, dh_high = block.backward(-self.lam)
            for layer, d in ((low, dh_low), (high, dh_high)):
                i = layer - 1
                dfeatures[i] = d if dfeatures[i] is None else dfeatures[i] + d
        return dfeatures

    def loss(self, F_list):
        """-lam * sum_l F_l (0-d), the regularizer's term of L."""
        return -self.lam * sum(F_list)
