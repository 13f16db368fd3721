"""ifm: Information Flow Maximization (Shen, Li, Liu 2019, Section 3) on NumPy/CuPy.

An ``IFMBlock`` estimates the mutual information F between adjacent conv
feature maps H_l and H_{l+1} with a discriminator D on sampled pairs of
channel vectors; ``IFMRegularizer`` sums it over layer pairs for the training
loss L = L_clf - lambda * sum_l F_l. Every backward is written by hand; see
docs/math.md for the derivation.

Modules: ``estimators`` (F and dF/dV), ``sampling`` (pair positions),
``pairs`` (gather/scatter of pair vectors), ``critic`` (D), ``block``,
``regularizer``.
"""
from .block import IFMBlock
from .critic import PairCritic, make_discriminator
from .estimators import ESTIMATORS, DVMovingAverage, jsd_divergence
from .regularizer import IFMRegularizer

__all__ = ["IFMBlock", "IFMRegularizer", "ESTIMATORS", "PairCritic", "make_discriminator",
           "DVMovingAverage", "jsd_divergence"]
