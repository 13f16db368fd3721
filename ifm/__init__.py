"""ifm: Information Flow Maximization (Shen, Li, Liu 2019, Section 3) on NumPy/CuPy.

An ``IFMBlock`` estimates the mutual information F between adjacent conv
feature maps H_l and H_{l+1} with a discriminator D on sampled pairs of
channel vectors; ``IFMRegularizer`` sums it over layer pairs for the training
loss L = L_clf - lambda * sum_l F_l. Every backward is written by hand; see
docs/math.md for the derivation.

Modules: ``estimators`` (F and dF/dV), ``sampling`` (pair positions),
``pairs`` (the pair layer: gather of pair vectors and D's first layer),
``critic`` (the rest of D and the estimator), ``block``,
``regularizer``.
"""
from .block import IFMBlock, PairPositions, upload_positions
from .critic import Critic, PairCritic, make_discriminator
from .estimators import ESTIMATORS, DVMovingAverage, jsd_divergence
from .pairs import PairLinear
from .regularizer import IFMRegularizer

__all__ = ["IFMBlock", "IFMRegularizer", "ESTIMATORS", "Critic", "PairCritic", "PairLinear",
           "PairPositions", "make_discriminator", "upload_positions", "DVMovingAverage",
           "jsd_divergence"]
