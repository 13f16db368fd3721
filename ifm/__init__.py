"""ifm: Information Flow Maximization (Shen, Li, Liu 2019, Section 3) on NumPy/CuPy.

``IFMRegularizer`` estimates the mutual information F_l between adjacent conv
feature maps H_l and H_{l+1} with a discriminator D_l on sampled pairs of
channel vectors, for each layer pair l, and assembles the training loss of
the paper's Eq. (5), L = L_clf - lambda * sum_l F_l. Every backward is written
by hand; docs/math.md derives them.

The reading path, in the order of the math: ``regularizer`` (Eq. 5),
``discriminator`` (D_l and F_l), ``estimators`` (F and dF/dV), ``pairs`` (the
pair layer: gather, upsampling and D_l's first layer, and their adjoints),
``sampling`` (where the pairs lie). The speed path the regularizer runs:
``stacked`` (the D_l of all pairs as one stack) and ``fast_pairs`` (the pair
layer without building U or z), each tested equal to the reading path.
"""
from .discriminator import Discriminator
from .estimators import ESTIMATORS, DVMovingAverage, Estimator, jsd_divergence
from .regularizer import IFMRegularizer
from .sampling import PairPositions

__all__ = ["IFMRegularizer", "Discriminator", "ESTIMATORS", "Estimator", "DVMovingAverage",
           "PairPositions", "jsd_divergence"]
