"""ice: iCE fi-RevNet (Jacobsen, Behrmann, Zemel, Bethge, ICLR 2019), the method the paper's
Table 3 compares IFM with, on the layer library of nn/.

Modules, in the order a reader meets them: ``gaussian`` (the log-likelihoods and bits per
dimension), ``flow`` (the invertible ops: ActNorm, channel reversal, additive coupling,
squeeze, split, each with its inverting backward), ``firevnet`` (the fully invertible RevNet
built of them), ``objective`` (the encoder's logits and nuisance part, D_nc and the loss
bpd + CE - beta CE_nc), ``trainer`` (one training step in the authors' order).
"""
