"""The speed path of nn: each module computes what its namesake in nn/ computes.

nn/batchnorm.py, conv.py, linear.py, activations.py and pooling.py are the
formulas, written as the math reads and used as the references; the modules
here are what the layers (nn/layers.py) run. They differ from the formulas in
how, never in what:

- on the CPU the work is split over the cores through nn/cpu/parallel.py
  (blocks of channels that stay in cache, bands of products, bands of im2col);
- a backward writes each parameter gradient straight into the array it is
  given (``dw=``, ``db=``, ...: the layer's gradient, a view of the
  optimizer's flat buffer, nn/flat.py), so no copy follows it;
- a few expressions take a cheaper but equal form (each says which).

tests/test_nn_fast.py holds every function here equal to its formula in
float64, serial and split.
"""
