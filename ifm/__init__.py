"""ifm: Information Flow Maximization (Shen, Li, Liu 2019, Section 3) on NumPy/CuPy.

``IFMRegularizer`` estimates the mutual information F_l between adjacent conv
feature maps H_l and H_{l+1} with a discriminator D_l on sampled pairs of
channel vectors, for each layer pair l, for the training loss
L = L_clf - lambda * sum_l F_l. Every backward is written by hand; see
docs/math.md for the derivation.

Modules: ``estimators`` (F and dF/dV), ``sampling`` (pair positions),
``pairs`` (the pair layer: gather of pair vectors and D's first layer),
``stacked`` (the layers of all three D_l as one stack), ``critic`` (the rest of
the D_l as one stack, and the estimator), ``block`` (one layer pair: positions
and pair layer), ``regularizer``.
"""
from .block import IFMPair, PairPositions, upload_positions
from .critic import Critic, PairCritic
from .estimators import ESTIMATORS, DVMovingAverage, jsd_divergence
from .pairs import PairLinear
from .regularizer import IFMRegularizer

__all__ = ["IFMPair", "IFMRegularizer", "ESTIMATORS", "Critic", "PairCritic", "PairLinear",
           "PairPositions", "upload_positions", "DVMovingAverage",
           "jsd_divergence"]
