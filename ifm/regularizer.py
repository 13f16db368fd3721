"""IFMRegularizer: the paper's Eq. (5) over several pairs of conv-block outputs.

    (5)  L = L_clf - lambda * sum_l F_l,   F_l = F(H_l, H_{l+1}) by its own D_l

The paper pairs blocks (1,2), (2,3), (3,4) and puts no weight on the F_l
(lambda = 1; ours defaults to 30, docs/math.md). H_l is the output of conv
block l after its LeakyReLU and before its max-pool, so H_{l+1} is exactly
half its size and both are the maps the classifier actually passes on (the
pooled map is a function of H_l). Layer indices are 1-based as in the paper.

    reg = IFMRegularizer(channels=[32, 64, 128, 128], pairs=[(1, 2), (2, 3), (3, 4)],
                         lam=30.0, samples=64, estimator="jsd", rng=init_rng)
    F = reg.forward([H_1, H_2, H_3, H_4], rng)    # [F_l], one 0-d array per pair
    L = reg.loss(L_clf, F)                         # Eq. (5)
    dH = reg.backward()                            # [dL/dH_l] (None: in no pair)

Pair l has its discriminator D_l (ifm/discriminator.py: the pair layer, the
rest of Table 2 and the estimator), keyed "D12", "D23", "D34": its parameters
are "D12.0.W", "D12.1.gamma", ... Forward draws each pair's positions
(ifm/sampling.py) from ``rng``, or takes them ready (``positions``, e.g. drawn
ahead with ``draw`` and moved to the device by the trainer's method),
and returns F_l = D_l(H_l, H_{l+1}). Backward seeds every D_l with
dL/dF_l = -lambda, the derivative of Eq. (5), and sums each map's pieces:

    dL/dH_l = -lambda * (dF_{l-1,l}/dH_l + dF_{l,l+1}/dH_l)

(H_2 and H_3 belong to two pairs). It also fills every D's grads with the
gradient of the same loss term, -lambda * dF_l/dtheta, so one optimizer step
by gradient DESCENT on L over the classifier's and the regularizer's
parameters makes the CNN and every D maximize F. With ``lam_d`` set, D's
grads are those of -lam_d * F_l instead (lam_d = 1: each D_l maximizes F_l at
its own scale, and lambda weighs only the CNN's side; the paper's lambda = 1
makes the two readings one). The D's are not part of the classifier: a saved
classifier (its own state_dict) holds no IFM parameter.

How it runs: ``stacked`` (the default, training) runs the D_l as one stack
(ifm/stacked.py: layers 1..9 of all D_l in one pass, their parameters stored
as stacks that each D_l views); ``stacked=False`` runs each D_l alone, the
definition above, which the tests hold the stack equal to.
"""
import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .discriminator import HIDDEN, Discriminator
from .pairs import check_upsample
from .sampling import (locations_per_image, pair_positions, sample_infonce_pairs,
                       sample_pairs)
from .stacked import DiscriminatorStack

PAPER_PAIRS = ((1, 2), (2, 3), (3, 4))


class IFMRegularizer(Container):
    """IFM over ``pairs`` of feature maps with ``channels`` (module docstring).

    samples:   K locations per image (an int, capped at h*w) or "all"; as many
               marginal pairs (InfoNCE: negatives within groups, see ``sampling``).
    estimator: "jsd" (default), "dv", "infonce" or "paper-eq4" (ifm/estimators.py).
    upsample:  "nearest" (default) or "bilinear".
    marginal:  "image" (default: both halves of a marginal pair from one image)
               or "batch" (each half from an independently drawn image).
    rng:       numpy Generator for the D_l's initial weights, drawn pair by pair.
    """

    def __init__(self, channels, pairs=PAPER_PAIRS, lam=1.0, samples=64, estimator="jsd",
                 upsample="nearest", marginal="image", rng=None, dtype=np.float32,
                 dv_ema=None, hidden=HIDDEN, lam_d=None, stacked=True):
        pairs = [tuple(p) for p in pairs]
        for low, high in pairs:
            if not (1 <= low < len(channels) and high == low + 1):
                raise ValueError(f"pair {(low, high)}: IFM pairs adjacent layers l, l+1 "
                                 f"within 1..{len(channels)}")
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"repeated pair in {pairs}")
        if lam_d is not None and not lam_d > 0:
            raise ValueError(f"lam_d must be positive, got {lam_d}")
        if marginal not in ("image", "batch"):
            raise ValueError(f"marginal must be 'image' or 'batch', got {marginal!r}")
        check_upsample(upsample)
        locations_per_image(samples, 1)                     # validates samples
        rng = default_rng(rng)
        self.discriminators = [Discriminator(channels[low - 1], channels[high - 1], estimator,
                                             upsample, hidden, rng, dtype, dv_ema)
                               for low, high in pairs]
        self.names = [f"D{low}{high}" for low, high in pairs]
        super().__init__(list(zip(self.names, self.discriminators)))
        self.stack = DiscriminatorStack(self.discriminators)
        self.channels, self.pairs, self.lam = list(channels), pairs, lam
        self.lam_d = lam if lam_d is None else lam_d
        self.samples, self.estimator = samples, estimator
        self.upsample, self.marginal = upsample, marginal
        self.stacked = stacked
        self._n_features = None

    @classmethod
    def one_pair(cls, c_low, c_high, **options):
        """IFM of one pair of maps (H_1, H_2) alone, with c_low and c_high channels."""
        return cls([c_low, c_high], pairs=[(1, 2)], **options)

    # ---- Eq. (5) ---------------------------------------------------------------------------

    def draw(self, feature_shapes, rng):
        """[host PairPositions per pair] for features of these shapes, drawn from ``rng``
        pair by pair (as ``forward(features, rng)`` draws them)."""
        self._check_count(feature_shapes)
        positions = []
        for low, high in self.pairs:
            low_shape, high_shape = feature_shapes[low - 1], feature_shapes[high - 1]
            _, h, w, N = low_shape
            draw = sample_infonce_pairs if self.estimator == "infonce" else sample_pairs
            index = draw(N, h, w, self.samples, self.marginal, rng)
            positions.append(pair_positions(index, low_shape, high_shape, self.upsample))
        return positions

    def forward(self, features, rng=None, positions=None):
        """[F_l] (0-d arrays) for features [H_1, ..., H_L].

        ``rng`` drives all sampling; or ``positions`` gives each pair's
        PairPositions on the features' device (a list like ``draw``'s).
        """
        self._check_count(features)
        if (rng is None) == (positions is None):
            raise ValueError("give exactly one of rng and positions")
        maps = [(features[low - 1], features[high - 1]) for low, high in self.pairs]
        for D, (h_low, h_high) in zip(self.discriminators, maps):
            D.pair_layer.check(h_low, h_high)
        if positions is None:
            xp = get_array_module(features[0])
            positions = [p.on(xp) for p in self.draw([H.shape for H in features], rng)]
        self._n_features = len(features)
        if self.stacked:
            return self.stack.forward(maps, positions)
        return [D.forward(h_low, h_high, p)
                for D, (h_low, h_high), p in zip(self.discriminators, maps, positions)]

    def _check_count(self, features):
        if len(features) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} feature maps, got {len(features)}")

    def loss(self, L_clf, F):
        """Eq. (5): L = L_clf - lambda * sum_l F_l, for F = forward(...) (0-d on F's device)."""
        return L_clf - self.lam * sum(F)

    def backward(self, dF=None):
        """dL/dH for the L of Eq. (5): a list like features (None where unused).

        Default dF = dL/dF_l = -lambda for every pair, with D's grads from
        -lam_d * F_l (the same when lam_d = lam; otherwise each D_l is seeded
        with -lam_d and dH rescaled by lam / lam_d). Or dF: a host number for
        every pair or an array (pairs,) on the device, for L = sum_l dF_l F_l.
        """
        if self._n_features is None:
            raise RuntimeError("backward called before forward")
        scale = None
        if dF is None:
            dF = -self.lam_d
            if self.lam_d != self.lam:
                scale = self.lam / self.lam_d
        if np.ndim(dF) != 0 and tuple(dF.shape) != (len(self.pairs),):
            raise ValueError(f"dF must be one number or one per pair ({len(self.pairs)}), "
                             f"got shape {dF.shape}")
        if self.stacked:
            per_pair = self.stack.backward(dF)
        else:
            per_pair = [D.backward(dF if np.ndim(dF) == 0 else dF[l])
                        for l, D in enumerate(self.discriminators)]
        dfeatures = [None] * self._n_features
        for (low, high), pieces in zip(self.pairs, per_pair):
            for layer, d in zip((low, high), pieces):
                i = layer - 1
                dfeatures[i] = d if dfeatures[i] is None else dfeatures[i] + d
        if scale is not None:
            dfeatures = [None if d is None else d * d.dtype.type(scale) for d in dfeatures]
        return dfeatures

    # ---- the storage: each D_l's layers 1..9 are views of the stack's arrays ----------------

    def children(self):
        return super().children() + [self.stack]

    def to(self, device):
        super().to(device)
        self.stack.share()
        return self

    def astype(self, dtype):
        super().astype(dtype)
        self.stack.share()
        return self

    def flat_keys(self):
        """The pair layers' keys, then each stacked parameter's members next to each other
        ("D12.3.W", "D23.3.W", "D34.3.W"), so that every stack is one span of a flat buffer."""
        first = [f"{name}.0.{key}" for name, D in zip(self.names, self.discriminators)
                 for key in D.pair_layer.params]
        return first + [key for members in self.stack.stacked_keys(self.names).values()
                        for key in members]

    def attach(self, flat, prefix=""):
        super().attach(flat, prefix)
        self.stack.attach(flat, [prefix + name for name in self.names])

    def translate_old_keys(self, state, prefix=""):
        """``state`` (a loaded checkpoint's host arrays) with the D_l entries of older
        checkpoints under today's names; other entries as they are. Entries under
        prefix + "ifm12.<k>" (each D_l on its own; the pair layers of stacked ones)
        become prefix + "D12.<k>", and a stack prefix + "D.<k>" (G, ...) is cut into
        prefix + "D12.<k>", "D23.<k>", ... (member l of the stack is D_l's)."""
        old_names = {f"ifm{name[1:]}": name for name in self.names}
        out = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                out[key] = value
                continue
            name, _, rest = key[len(prefix):].partition(".")
            if name in old_names:
                out[f"{prefix}{old_names[name]}.{rest}"] = value
            elif name == "D":
                if len(value) != len(self.names):
                    raise ValueError(f"{key}: a stack of {len(value)} critics, this run has "
                                     f"{len(self.names)} layer pairs")
                out.update({f"{prefix}{n}.{rest}": value[l] for l, n in enumerate(self.names)})
            else:
                out[key] = value
        return out
