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

Each pair l has its ``IFMPair`` (positions, and D_l's first layer, whose
width depends on the pair) and member l of one ``Critic`` stack (the rest of
D_l; every D_l has Table 2's widths). Forward: the pairs' positions; then
each run of consecutive pairs with the same number of rows (all three with
K = 64 pre-pool) has its first-layer outputs written into one (g, 256, S)
array and goes through the stack at once (members in a run share nothing but
the arrays); pairs with other row counts (K = all) run alone.

``backward`` also fills every D's grads with the gradient of the same loss
term, -lambda * dF_l/dtheta, so one optimizer step by gradient DESCENT on
L over the classifier's and the regularizer's parameters makes the CNN and
every D maximize F. With ``lam_d`` set, D's grads are those of -lam_d * F_l
instead (lam_d = 1: each D_l maximizes F_l at its own scale, and lambda
weighs only the CNN's side; the paper's lambda = 1 makes the two readings
one). ``params``/``grads``/``buffers`` are live flat views keyed
"ifm12.0.W" (the pair layers) and "D.1.gamma" (G, 256), ... (the stack);
``pair_params`` shows each D_l's parameters under its own name. The D's are
not part of the classifier: a saved classifier (its own state_dict) holds no
IFM parameter.
"""
import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .block import IFMPair
from .critic import HIDDEN, Critic, discriminator_layers

PAPER_PAIRS = ((1, 2), (2, 3), (3, 4))


def runs(positions):
    """Slices of consecutive pairs whose PairPositions have one row count, n_joint and
    groups (they can share one stacked batch)."""
    form = [(p.index.shape[1], p.n_joint, p.groups) for p in positions]
    starts = [i for i in range(len(form)) if i == 0 or form[i] != form[i - 1]]
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [len(form)])]


class IFMRegularizer(Container):
    def __init__(self, channels, pairs=PAPER_PAIRS, lam=1.0, samples=64, estimator="jsd",
                 upsample="nearest", marginal="image", rng=None, dtype=np.float32,
                 dv_ema=None, hidden=HIDDEN, lam_d=None):
        pairs = [tuple(p) for p in pairs]
        for low, high in pairs:
            if not (1 <= low < len(channels) and high == low + 1):
                raise ValueError(f"pair {(low, high)}: IFM pairs adjacent layers l, l+1 "
                                 f"within 1..{len(channels)}")
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"repeated pair in {pairs}")
        if lam_d is not None and not lam_d > 0:
            raise ValueError(f"lam_d must be positive, got {lam_d}")
        rng = default_rng(rng)
        self.blocks, member_layers = [], []
        for low, high in pairs:         # D_l's weights drawn layer by layer, pair by pair
            self.blocks.append(IFMPair(channels[low - 1], channels[high - 1], samples=samples,
                                       estimator=estimator, upsample=upsample,
                                       marginal=marginal, rng=rng, dtype=dtype,
                                       out_features=hidden[0]))
            member_layers.append(discriminator_layers(hidden, rng, dtype))
        self.critic = Critic(len(pairs), estimator, hidden, dtype=dtype, dv_ema=dv_ema,
                             member_layers=member_layers)
        self.names = [f"ifm{low}{high}" for low, high in pairs]
        super().__init__(list(zip(self.names, self.blocks)) + [("D", self.critic)])
        self.channels, self.pairs, self.lam = list(channels), pairs, lam
        self.lam_d = lam if lam_d is None else lam_d
        self.estimator = estimator
        self._n_features = None
        self._runs = None

    @classmethod
    def one_pair(cls, c_low, c_high, **options):
        """IFM of one pair of maps (H_1, H_2) alone, with c_low and c_high channels."""
        return cls([c_low, c_high], pairs=[(1, 2)], **options)

    def pair_params(self):
        """{"ifm12.0.W": ..., "ifm12.1.gamma": ..., ...}: D_l's parameters under its own
        name, in D's layer order, pair by pair (views: member l of each stack)."""
        named = {}
        for l, (name, block) in enumerate(zip(self.names, self.blocks)):
            named.update({f"{name}.{k}": p for k, p in block.params.items()})
            named.update({f"{name}.{k}": p[l] for k, p in self.critic.params.items()})
        return named

    def stack_pair_entries(self, state, prefix=""):
        """``state`` with each D_l's entries under their own names (prefix + "ifm12.3.W",
        as ``pair_params`` names them and checkpoints written before the critics were
        stacked hold them) replaced by the stacks (prefix + "D.3.W"); the pair layers'
        entries ("ifm12.0.W") and all others are kept as they are. Host arrays (a
        loaded checkpoint)."""
        out, members = {}, {}
        for key, value in state.items():
            name, _, rest = key[len(prefix):].partition(".")
            if key.startswith(prefix) and name in self.names and not rest.startswith("0."):
                members.setdefault(f"{prefix}D.{rest}", {})[self.names.index(name)] = value
            else:
                out[key] = value
        for key, per_pair in members.items():
            if sorted(per_pair) != list(range(len(self.names))):
                raise ValueError(f"{key}: entries for pairs {sorted(per_pair)} of "
                                 f"{len(self.names)}")
            out[key] = np.stack([np.asarray(per_pair[l]) for l in range(len(self.names))])
        return out

    def draw(self, feature_shapes, rng):
        """[host PairPositions per pair] for features of these shapes.

        Drawn from ``rng`` pair by pair, in the order ``forward(features, rng)``
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
        maps = [(features[low - 1], features[high - 1]) for low, high in self.pairs]
        positions = [block.positions(*m, rng, p)
                     for block, m, p in zip(self.blocks, maps, positions)]
        xp = get_array_module(features[0])
        dtype = np.result_type(features[0].dtype, self.critic.dtype)
        self._n_features, self._runs, F = len(features), [], []
        for members in runs(positions):
            first = positions[members.start]
            a = xp.empty((members.stop - members.start, self.critic.width,
                          first.index.shape[1]), dtype=dtype)
            for j, l in enumerate(range(members.start, members.stop)):
                self.blocks[l].forward(*maps[l], positions[l].index, out=a[j])
            F_run, cache = self.critic.forward(a, first.n_joint, first.groups, members)
            self._runs.append(cache)
            F += [F_run[j, ...] for j in range(len(a))]     # 0-d views
        return F

    def _check_count(self, features):
        if len(features) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} feature maps, got {len(features)}")

    def backward(self, dF=None):
        """dL/dH for L = sum_l dF_l F_l: a list like features (None where unused).

        dF: a host number for every pair or an array (pairs,) on the device;
        default -lam, the regularizer's term of the loss, -lam * sum_l F_l,
        with D's grads from -lam_d * sum_l F_l (the same when lam_d = lam;
        otherwise dH is the one of -lam_d, times lam / lam_d).
        """
        if self._runs is None:
            raise RuntimeError("backward called before forward")
        scale = None
        if dF is None:
            dF = -self.lam_d
            if self.lam_d != self.lam:
                scale = self.lam / self.lam_d
        if np.ndim(dF) != 0 and tuple(dF.shape) != (len(self.pairs),):
            raise ValueError(f"dF must be one number or one per pair ({len(self.pairs)}), "
                             f"got shape {dF.shape}")
        dfeatures = [None] * self._n_features
        for cache in self._runs:
            members = cache.members
            da = self.critic.backward(dF if np.ndim(dF) == 0 else dF[members], cache)
            for j, l in enumerate(range(members.start, members.stop)):
                low, high = self.pairs[l]
                for layer, d in zip((low, high), self.blocks[l].backward(da[j])):
                    i = layer - 1
                    dfeatures[i] = d if dfeatures[i] is None else dfeatures[i] + d
        if scale is not None:
            dfeatures = [None if d is None else d * d.dtype.type(scale) for d in dfeatures]
        return dfeatures

    def loss(self, F_list):
        """-lam * sum_l F_l (0-d), the regularizer's term of L."""
        return -self.lam * sum(F_list)
