"""The classifier of the paper's Table 1.

Four blocks Conv3x3(pad 1)-BN-LeakyReLU(0.2)-MaxPool2 with 32, 64, 128, 128
channels, then FC(512, 10). Arrays are batch last (nn/layout.py): the input
x is (3, 32, 32, N), the block outputs before pooling are H_1 (32, 32, 32, N),
H_2 (64, 16, 16, N), H_3 (128, 8, 8, N) and H_4 (128, 4, 4, N); after the
last pool 128 * 2 * 2 = 512 features (512, N) remain, and the logits are (10, N).

The IFM regularizer reads H_1..H_4 and hands back extra gradients for them, so
``backward`` takes an optional list of per-block gradients that are added where
each H_l leaves its block. ``features_at`` says where that is: "pre-pool"
(default: after LeakyReLU, before pooling, the maps above) or "post-pool"
(after pooling: (32, 16, 16, N) ... (128, 2, 2, N), still a factor 2 apart).
"""
import numpy as np

from nn import BatchNorm2d, Conv2d, Flatten, LeakyReLU, Linear, MaxPool2d, Sequential
from nn.module import Container

CHANNELS = (32, 64, 128, 128)
NUM_CLASSES = 10


class Classifier(Container):
    def __init__(self, in_channels=3, channels=CHANNELS, image_size=32,
                 num_classes=NUM_CLASSES, rng=None, dtype=np.float32, features_at="pre-pool"):
        if features_at not in ("pre-pool", "post-pool"):
            raise ValueError(f"features_at must be 'pre-pool' or 'post-pool', got {features_at!r}")
        blocks, c_in = [], in_channels
        for c in channels:
            blocks.append(Sequential(Conv2d(c_in, c, 3, padding=1, rng=rng, dtype=dtype),
                                     BatchNorm2d(c, dtype=dtype), LeakyReLU(0.2)))
            c_in = c
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"image size {image_size} is too small for {len(channels)} poolings")
        blocks[0][0].input_grad = False     # nothing needs the gradient of the images
        self.blocks = blocks
        self.pools = [MaxPool2d(2) for _ in channels]
        self.flatten = Flatten()
        self.fc = Linear(c_in * side * side, num_classes, rng=rng, dtype=dtype)
        named = [(f"block{i + 1}", b) for i, b in enumerate(blocks)] + [("fc", self.fc)]
        super().__init__(named)
        self.channels = tuple(channels)
        self.features_at = features_at
        self.features = []

    def forward(self, x):
        """Logits (10, N) of x (3, H, W, N); keeps H_1..H_4 in ``self.features``."""
        self.features = []
        for block, pool in zip(self.blocks, self.pools):
            h = block.forward(x)
            x = pool.forward(h)
            self.features.append(h if self.features_at == "pre-pool" else x)
        return self.fc.forward(self.flatten.forward(x))

    def backward(self, dlogits, dfeatures=None):
        """Fill every gradient; ``dfeatures[l]`` (or None) is added to dL/dH_{l+1}.

        Returns None: the first convolution computes no gradient for the images.
        """
        d = self.flatten.backward(self.fc.backward(dlogits))
        extra = dfeatures if dfeatures is not None else [None] * len(self.blocks)
        post = self.features_at == "post-pool"
        for i in reversed(range(len(self.blocks))):
            if post and extra[i] is not None:
                d = d + extra[i]
            d = self.pools[i].backward(d)
            if not post and extra[i] is not None:
                d = d + extra[i]
            d = self.blocks[i].backward(d)
        return d
